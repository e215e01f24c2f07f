//! Every suite of tests in one binary (link time dominates on 2 cores).
//! Each test gets its own database and its own servers on ephemeral ports.

mod access;
mod alerting;
mod backups;
mod console;
mod consumer;
mod contacts;
mod event_feed;
mod gateway;
mod hardening;
mod interactions;
mod interactions_rules;
mod migrations;
mod monitoring;
mod outbox;
mod read_replicas;
mod segmentation;
mod support;
