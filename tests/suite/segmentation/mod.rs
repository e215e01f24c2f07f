//! The segmentation role end to end: its read model of features, built from
//! the contacts and interactions feeds.

mod analytics;
mod features;
mod kinds;
mod live_lane;
mod read_model;
mod rebuild;
mod scores;
mod segments;
mod time;
