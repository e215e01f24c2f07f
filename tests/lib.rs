//! End-to-end and platform tests live in `suite/`; this library is empty on purpose.
