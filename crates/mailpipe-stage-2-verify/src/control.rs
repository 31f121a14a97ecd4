//! What the verify stage did with an SNS protocol message (subscription and unsubscribe
//! confirmations): a closed set, written to `mail.verified`'s `control_action` and used as
//! the `action` label of `mailpipe_verify_control_total`.
//!
//! Invariant: a record's `control_action` never changes for the same action (a test pins
//! the shipped strings).

/// One SNS control action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlAction {
    /// The SubscribeURL was fetched: the subscription is confirmed.
    SubscriptionConfirmed,
    /// The SubscribeURL could not be fetched within the budget (SNS sends the
    /// confirmation again; an operator can confirm by hand).
    SubscriptionConfirmationFailed,
    /// An unsubscribe confirmation was received (nothing to do but record it).
    UnsubscribeConfirmed,
}

impl ControlAction {
    pub const ALL: [ControlAction; 3] = [
        ControlAction::SubscriptionConfirmed,
        ControlAction::SubscriptionConfirmationFailed,
        ControlAction::UnsubscribeConfirmed,
    ];

    /// The `control_action` value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::SubscriptionConfirmed => "sns_subscription_confirmed",
            // The SubscribeURL answered with a permanent error (e.g. an expired token).
            ControlAction::SubscriptionConfirmationFailed => "sns_subscription_confirmation_failed",
            // A signed UnsubscribeConfirmation: informational, nothing was done.
            ControlAction::UnsubscribeConfirmed => "sns_unsubscribe_confirmed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_keep_their_shipped_strings() {
        let names: Vec<&str> = ControlAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            names,
            [
                "sns_subscription_confirmed",
                "sns_subscription_confirmation_failed",
                "sns_unsubscribe_confirmed"
            ]
        );
    }
}
