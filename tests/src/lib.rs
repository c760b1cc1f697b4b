//! Black-box tests of the built `rotd` binary live in `tests/tests/`.
