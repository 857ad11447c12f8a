//! Refunds: money goes back the way it came, never to a different card.

use crate::{Money, PaymentError};

/// How long after capture a refund may still be issued.
pub const REFUND_WINDOW_DAYS: u32 = 180;

/// A refund request against one captured payment.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub capture_id: String,
    pub amount: Money,
    pub reason: String,
}

/// Checks a refund against what was captured and already refunded.
///
/// Partial refunds are allowed; the sum of all refunds for a capture can
/// never exceed the captured amount. Refunds older than
/// [`REFUND_WINDOW_DAYS`] are refused and must go through a manual payout.
pub fn validate_refund(
    captured: Money,
    already_refunded: Money,
    request: &RefundRequest,
    days_since_capture: u32,
) -> Result<Money, PaymentError> {
    if request.amount.currency != captured.currency {
        return Err(PaymentError::CurrencyMismatch);
    }
    if days_since_capture > REFUND_WINDOW_DAYS {
        return Err(PaymentError::UnknownAccount(format!(
            "capture {} is past the refund window",
            request.capture_id
        )));
    }
    let remaining = captured.minor - already_refunded.minor;
    if request.amount.minor > remaining {
        return Err(PaymentError::InsufficientFunds);
    }
    Ok(Money {
        minor: remaining - request.amount.minor,
        currency: captured.currency,
    })
}
