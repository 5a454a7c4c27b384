//! Events: every state change, for audit logs and metrics. Ids and subjects only, never secrets.

use std::time::Duration;

use crate::ids::{Resource, SessionId, SlotId, Subject, TicketId};
use crate::record::RevokeReason;

/// A state change the driver committed (or a denial worth auditing).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A session was created.
    Created {
        /// The new session.
        id: SessionId,
        /// Its owner.
        subject: Subject,
    },
    /// A session's secret was rotated (refresh or automatic renewal).
    Rotated {
        /// The session.
        id: SessionId,
        /// Its new generation.
        generation: u64,
    },
    /// A predecessor token was answered with the existing successor (second tab, retry after a
    /// lost reply).
    SuccessorReissued {
        /// The session.
        id: SessionId,
        /// True if accepted only because the successor was never presented (orphan recovery),
        /// false if inside the grace window.
        orphan: bool,
    },
    /// A rotated-out token was presented; the session was revoked.
    ReuseDetected {
        /// The session.
        id: SessionId,
    },
    /// A session was revoked.
    Revoked {
        /// The session.
        id: SessionId,
        /// Why.
        reason: RevokeReason,
    },
    /// Every session of a subject was revoked.
    SubjectRevoked {
        /// The subject.
        subject: Subject,
        /// How many live sessions were revoked.
        count: u64,
    },
    /// Every session on a resource was revoked.
    ResourceRevoked {
        /// The resource.
        resource: Resource,
        /// How many live sessions were revoked.
        count: u64,
    },
    /// A read found the session past its deadline.
    ExpiredOnRead {
        /// The session.
        id: SessionId,
    },
    /// A create was refused by a cap.
    CapRejected {
        /// The subject.
        subject: Subject,
    },
    /// A session was evicted to make room for a new one.
    Evicted {
        /// The evicted session.
        id: SessionId,
    },
    /// A create was refused by the creation rate.
    RateLimited {
        /// The subject.
        subject: Subject,
        /// How long until it may retry.
        retry_after: Duration,
    },
    /// A ticket was minted.
    TicketMinted {
        /// The ticket.
        ticket: TicketId,
        /// Its session.
        session: SessionId,
    },
    /// A ticket was redeemed (at most once, ever).
    TicketRedeemed {
        /// The ticket.
        ticket: TicketId,
        /// Its session.
        session: SessionId,
    },
    /// A slot was acquired.
    SlotAcquired {
        /// The slot.
        slot: SlotId,
        /// Its session.
        session: SessionId,
    },
    /// A slot was released.
    SlotReleased {
        /// The slot.
        slot: SlotId,
    },
    /// A heartbeat found its slot expired or its session no longer live.
    SlotExpired {
        /// The slot.
        slot: SlotId,
    },
    /// The reaper removed records.
    Reaped {
        /// How many.
        count: u64,
    },
    /// The reaper found stored bytes that do not decode and moved them aside (kept for
    /// inspection) instead of stalling on them: the store is damaged somewhere.
    Quarantined {
        /// How many entries.
        count: u64,
    },
}

/// Receives events. Called after the change is committed; must not block for long.
pub trait EventSink: Send + Sync + 'static {
    /// Handles one event.
    fn emit(&self, event: &Event);
}

/// Sends every event to `tracing` (target `leasehold`), at `warn` for security signals and
/// `debug` otherwise. The driver always emits to it, besides any sink given with
/// [`Sessions::with_events`](crate::Sessions::with_events).
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink;

impl EventSink for TracingSink {
    fn emit(&self, event: &Event) {
        match event {
            Event::ReuseDetected { .. } | Event::Quarantined { .. } => {
                tracing::warn!(target: "leasehold", ?event)
            }
            _ => tracing::debug!(target: "leasehold", ?event),
        }
    }
}

/// Collects events in memory: for tests and audits that inspect what happened.
#[derive(Clone, Debug, Default)]
pub struct CollectingSink {
    events: crate::sync::Arc<crate::sync::Mutex<Vec<Event>>>,
}

impl CollectingSink {
    /// Everything emitted so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl EventSink for CollectingSink {
    fn emit(&self, event: &Event) {
        if let Ok(mut e) = self.events.lock() {
            e.push(event.clone());
        }
    }
}
