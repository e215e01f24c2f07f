//! The `crm` binary run as an operator runs it, in one test binary.

mod chaos;
mod commands;
mod traces;
mod transfer;
mod up;
