//! Lectern's core: the store, the contexts and the supervised actors. This
//! crate knows nothing of HTTP; the web layer in `src/` calls into it.

pub mod accounts;
pub mod alerts;
pub mod assets;
pub mod aws;
pub mod backup;
pub mod billing;
pub mod cache;
pub mod content;
pub mod events;
pub mod housekeeping;
pub mod mail;
pub mod render;
pub mod store;
pub mod supervisor;
