//! Cross-module and end-to-end tests of weir; the tests themselves live in `tests/tests/`.
