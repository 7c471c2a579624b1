/* Test stub (see tests/stubs/README.md): the TFLM library umbrella header main.cpp includes. */
