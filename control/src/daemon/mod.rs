//! The esprit-ike daemon around the sans-IO core: configuration to parameters, the event loop,
//! the dataplane link and the control socket.

pub mod control;
pub mod dataplane;
pub mod introspect;
pub mod keylog;
pub mod metrics;
pub mod params;
pub mod privileges;
pub mod reconcile;
pub mod reload;
pub mod render;
pub mod run;
pub mod wait;
