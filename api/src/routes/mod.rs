//! One module per resource, each exposing `router()`; [`crate::startup::app`] merges them.

pub mod health;
