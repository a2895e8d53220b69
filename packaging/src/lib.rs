//! No code: this package carries the manifest of the `esprit` Debian package
//! (`[package.metadata.deb]` in its Cargo.toml, built by `packaging/build-deb.sh`).
