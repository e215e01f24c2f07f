//! Contacts and interactions as files, for `crm import` and `crm export`.
//!
//! - [`input`]: the rows of a CSV or JSON Lines file in any encoding,
//!   streamed, each with its line number; unreadable lines reported.
//! - [`columns`]: what each column becomes (headers that map by
//!   themselves, `--map` overrides), and the table `--show-mapping` prints.
//! - [`interactions`]: a row to an API interaction and the contact it names.
//! - [`contacts`]: a row to an API contact (each unreadable cell named) and
//!   a contact to the columns `crm export` writes, which import again.

pub mod columns;
pub mod contacts;
pub mod input;
pub mod interactions;

pub use columns::{Mapping, Overrides, Target};
pub use contacts::{CellError, DateOrder, RowOptions};
pub use input::{Format, Item, ReadOptions, Record, Rows};
