//! The TOML file's shape.
