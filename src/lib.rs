//! toystore: see the README. This package only holds the system tests in `tests/system`.
