//! Host RM core.
