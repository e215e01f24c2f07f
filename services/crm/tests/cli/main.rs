//! The `crm` binary run as an operator runs it, in one test binary.

mod commands;
mod up;
