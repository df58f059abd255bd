//! All integration tests in one binary (one link step instead of five).

mod algorithms;
mod bounds;
mod common;
mod contract;
mod layer;
mod lockfree;
mod outage;
