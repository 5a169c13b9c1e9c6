//! What the Mailer answers to.

use actix::prelude::*;

use crate::supervisor::restarts::Crashed;

/// Look for due emails now (sent by the NOTIFY listener and the poll timer).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct Wake;

/// Claim nothing more, and answer once the sends in flight are done (at shutdown).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), Crashed>")]
pub struct FinishSends;
