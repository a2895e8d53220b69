//! The esprit-ike configuration: a TOML file shaped like swanctl.conf.
