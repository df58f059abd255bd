//! The guide's isolation anomalies (placeholder; filled in below).
