//! The states of a consumer's delivery of one event, and the rule of which states hold back the
//! later events of the same object.

use sea_orm::Value;
use serde::{Deserialize, Serialize};

/// Where one consumer's delivery of one event stands (a row of `distribute_deliveries`). An event
/// without a row is pending below nothing: new above the consumer's position, handled below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryState {
    /// A worker holds it until its lease runs out.
    Leased,
    /// Parked behind an earlier event of its object; taken once that one is done.
    Waiting,
    /// Failed; tried again when due.
    Retry,
    /// Failed for good (kept, retryable by command).
    Dead,
    /// Handled (kept only above the consumer's position).
    Done,
}

impl DeliveryState {
    /// The name stored in `distribute_deliveries.state`.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Leased => "leased",
            Self::Waiting => "waiting",
            Self::Retry => "retry",
            Self::Dead => "dead",
            Self::Done => "done",
        }
    }

    /// The states a claim can take (again) once they are due.
    pub(crate) const CLAIMABLE: [Self; 3] = [Self::Leased, Self::Retry, Self::Waiting];
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Leased,
            Self::Waiting,
            Self::Retry,
            Self::Dead,
            Self::Done,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| format!("unknown delivery state `{s}`"))
    }
}

impl From<DeliveryState> for Value {
    fn from(state: DeliveryState) -> Self {
        state.as_str().into()
    }
}

/// What a dead event does to the later events of its object, for one consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadEvents {
    /// Hold them back until the dead event is retried and handled (the default: a replica must
    /// not drift).
    #[default]
    Hold,
    /// Move past: later events of the object are delivered; the dead one stays dead.
    Skip,
}

impl DeadEvents {
    /// The hold rule: whether a delivery in `state` holds back the later events of its object.
    /// Every unfinished delivery does; a dead one only under [`DeadEvents::Hold`].
    pub(crate) fn holds(self, state: DeliveryState) -> bool {
        match state {
            DeliveryState::Leased | DeliveryState::Waiting | DeliveryState::Retry => true,
            DeliveryState::Dead => self == DeadEvents::Hold,
            DeliveryState::Done => false,
        }
    }

    /// The states that hold an object back under this policy.
    pub(crate) fn holding_states(self) -> Vec<DeliveryState> {
        [
            DeliveryState::Leased,
            DeliveryState::Waiting,
            DeliveryState::Retry,
            DeliveryState::Dead,
            DeliveryState::Done,
        ]
        .into_iter()
        .filter(|s| self.holds(*s))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in [
            DeliveryState::Leased,
            DeliveryState::Waiting,
            DeliveryState::Retry,
            DeliveryState::Dead,
            DeliveryState::Done,
        ] {
            assert_eq!(state.as_str().parse::<DeliveryState>(), Ok(state));
        }
        assert!("Dead".parse::<DeliveryState>().is_err());
    }

    #[test]
    fn a_dead_event_holds_its_object_only_under_hold() {
        assert!(DeadEvents::Hold.holds(DeliveryState::Dead));
        assert!(!DeadEvents::Skip.holds(DeliveryState::Dead));
        for policy in [DeadEvents::Hold, DeadEvents::Skip] {
            assert!(policy.holds(DeliveryState::Retry));
            assert!(policy.holds(DeliveryState::Leased));
            assert!(policy.holds(DeliveryState::Waiting));
            assert!(!policy.holds(DeliveryState::Done));
        }
        assert_eq!(DeadEvents::Skip.holding_states().len(), 3);
        assert_eq!(DeadEvents::Hold.holding_states().len(), 4);
    }
}
