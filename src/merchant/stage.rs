//! The onboarding stages (SPEC §2) and the forward-only stage machine for mail.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::mail::{Direction, MailKind};

/// Where a merchant is in the Hecto contract, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Applied,
    GuidanceReceived,
    Contracting,
    ContractCompleted,
    ChannelConfigured,
    Developing,
    CardReviewRequested,
    Live,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Applied,
        Stage::GuidanceReceived,
        Stage::Contracting,
        Stage::ContractCompleted,
        Stage::ChannelConfigured,
        Stage::Developing,
        Stage::CardReviewRequested,
        Stage::Live,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Stage::Applied => "applied",
            Stage::GuidanceReceived => "guidance_received",
            Stage::Contracting => "contracting",
            Stage::ContractCompleted => "contract_completed",
            Stage::ChannelConfigured => "channel_configured",
            Stage::Developing => "developing",
            Stage::CardReviewRequested => "card_review_requested",
            Stage::Live => "live",
        }
    }

    pub fn korean(self) -> &'static str {
        match self {
            Stage::Applied => "가입신청서 제출",
            Stage::GuidanceReceived => "계약안내 수신",
            Stage::Contracting => "계약진행",
            Stage::ContractCompleted => "계약완료",
            Stage::ChannelConfigured => "채널설정",
            Stage::Developing => "개발진행",
            Stage::CardReviewRequested => "카드사 심사 요청",
            Stage::Live => "카드사 심사 완료",
        }
    }

    /// The stage a mail of this kind and direction is evidence of, if any (SPEC §2 table).
    ///
    /// Outgoing mail counts only where the SPEC says so: the merchant's own documents
    /// (`documents_request`) and card-review request found in Sent. An outgoing "계약완료 문의"
    /// is a question, not evidence.
    pub fn entered_by(kind: MailKind, direction: Option<Direction>) -> Option<Stage> {
        let incoming = direction == Some(Direction::Incoming);
        match kind {
            MailKind::Guidance if incoming => Some(Stage::GuidanceReceived),
            MailKind::DocumentsRequest => Some(Stage::Contracting),
            MailKind::ContractCompleted if incoming => Some(Stage::ContractCompleted),
            MailKind::CardReviewRequested => Some(Stage::CardReviewRequested),
            MailKind::CardReviewCompleted if incoming => Some(Stage::Live),
            _ => None,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL.into_iter().find(|st| st.id() == s).ok_or_else(|| {
            let ids: Vec<&str> = Stage::ALL.iter().map(|s| s.id()).collect();
            format!("unknown stage {s:?}; stages are {}", ids.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_ids_round_trip_and_unknown_ids_list_the_valid_ones() {
        for s in Stage::ALL {
            assert_eq!(s.id().parse::<Stage>().unwrap(), s);
        }
        let err = "signed".parse::<Stage>().unwrap_err();
        assert!(err.contains("guidance_received"), "{err}");
    }

    #[test]
    fn mail_kinds_enter_stages_per_the_spec_table() {
        use Direction::*;
        let table = [
            (MailKind::Guidance, Some(Incoming), Some(Stage::GuidanceReceived)),
            (MailKind::Guidance, Some(Outgoing), None),
            (MailKind::DocumentsRequest, Some(Incoming), Some(Stage::Contracting)),
            (MailKind::DocumentsRequest, Some(Outgoing), Some(Stage::Contracting)),
            (MailKind::ContractCompleted, Some(Incoming), Some(Stage::ContractCompleted)),
            (MailKind::ContractCompleted, Some(Outgoing), None),
            (MailKind::CardReviewRequested, Some(Incoming), Some(Stage::CardReviewRequested)),
            (MailKind::CardReviewRequested, Some(Outgoing), Some(Stage::CardReviewRequested)),
            (MailKind::CardReviewCompleted, Some(Incoming), Some(Stage::Live)),
            (MailKind::CardReviewProgress, Some(Incoming), None),
            (MailKind::OtherHecto, Some(Incoming), None),
            (MailKind::Suspicious, Some(Incoming), None),
            (MailKind::NotHecto, None, None),
        ];
        for (kind, dir, want) in table {
            assert_eq!(Stage::entered_by(kind, dir), want, "{kind:?} {dir:?}");
        }
    }

    #[test]
    fn stages_are_ordered_as_the_procedure() {
        assert!(Stage::Applied < Stage::GuidanceReceived);
        assert!(Stage::Developing < Stage::CardReviewRequested);
        assert!(Stage::CardReviewRequested < Stage::Live);
    }
}
