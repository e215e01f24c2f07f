//! `crm import` and `crm export`: contacts between files and a running
//! install, through its gateway. The file formats, the column mapping and
//! the conversions live in `crm-transfer`; this module talks to the suite.
//!
//! - [`import`]: a file into `ImportContacts` or `IngestInteractions`, with
//!   progress, the error report and the checkpoint.
//! - [`export`]: `ListContacts` into a file.
//! - [`subject`]: everything about one person, from every role, as one document.
//! - [`report`]: the counts and the error report.
//! - [`checkpoint`]: how far an interrupted import got.
//! - [`progress`]: the bar, or plain lines when not on a terminal.

pub mod checkpoint;
pub mod export;
pub mod import;
pub mod progress;
pub mod report;
pub mod subject;
