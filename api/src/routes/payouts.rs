//! Money leaving the platform: a freelancer's payout account, wallet and payouts; the admin's
//! list of payouts and card refunds that failed or wait; and the webhook the payment provider
//! sends its notices to.
//!
//! Who (API.md): the freelancer for their own account, wallet and payouts; admins for the list;
//! the webhook takes no bearer token, only the provider's signature (and nothing else accepts
//! that signature).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use gigledger_commands::notice::{self, NoticeEnvelope, Recorded, SIGNATURE_HEADER};
use gigledger_commands::services::{RequestContext, ServiceError};
use gigledger_domain::gateway::{AccountStatus, Provider};
use gigledger_domain::{
    Actor, ContractId, ErrorKind, EscrowCommand, MilestoneId, Money, PayoutId, Role, UserId,
    WalletCommand,
};
use gigledger_projections::read::wallets::{self, AttentionView, PayoutView, WalletView};
use serde::{Deserialize, Serialize};

use crate::auth::{require_any, Caller};
use crate::command::{self, CommandRequest, Reply};
use crate::error::{ApiError, ApiQuery};
use crate::query::{self, from_read, read_failed, Listed, MinPosition, Paging};
use crate::routes::{Table, PROVIDER};
use crate::state::AppState;

pub fn routes(table: Table) -> Table {
    table
        .put("/v1/me/payout-account", "freelancer", put_payout_account)
        .get("/v1/me/wallet", "freelancer", my_wallet)
        .post("/v1/me/payouts", "freelancer", request_payout)
        .get("/v1/me/payouts", "freelancer", my_payouts)
        .get("/v1/payouts", "admin", needing_attention)
        .post("/v1/webhooks/payments", PROVIDER, webhook)
}

/// `PUT /v1/me/payout-account`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutAccountBody {
    /// `simulated` (the default provider), `stripe` or `razorpay`.
    pub provider: Provider,
    /// An account the freelancer already holds at the provider; the provider's onboarding
    /// answers the account it keeps for them (the simulated one issues its own).
    pub account_id: Option<String>,
}

/// Registers (or replaces) the caller's payout account: the provider's onboarding answers the
/// account id, pending until the provider verifies it (a notice to the webhook).
#[utoipa::path(put, path = "/v1/me/payout-account", tag = "payouts", request_body = PayoutAccountBody, responses((status = 200, description = "registered: `account_id`, `status` (`pending` / `verified`) and, for a real provider, `onboarding_url`", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn put_payout_account(
    State(state): State<AppState>,
    _caller: Caller,
    request: CommandRequest<PayoutAccountBody>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Freelancer]) {
        return e.into_response();
    }
    command::run(
        &state,
        "register_payout_account",
        request,
        move |inv| async move {
            if inv
                .body
                .account_id
                .as_deref()
                .is_some_and(|a| a.is_empty() || a.len() > 200)
            {
                return Err(ApiError::validation("account_id", "1 to 200 characters"));
            }
            let (outcome, receipt) = inv
                .services
                .register_payout_account(inv.actor, inv.body.provider, &inv.ctx)
                .await
                .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
            let status = match receipt.status {
                AccountStatus::Pending => "pending",
                AccountStatus::Verified => "verified",
            };
            Ok(Reply::ok(&outcome)
                .with("account_id", receipt.account_id)
                .with("status", status)
                .with("onboarding_url", receipt.onboarding_url))
        },
    )
    .await
}

/// The caller's wallet: per currency `available`, `pending`, `paid_out`; the payout account and
/// its status; recent credits and payouts.
#[utoipa::path(get, path = "/v1/me/wallet", tag = "payouts", responses((status = 200, description = "the caller's wallet", body = WalletView)))]
pub(crate) async fn my_wallet(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Freelancer])?;
    let position = min.wait(&state, &[wallets::NAME]).await?;
    let mut conn = state.pool.acquire().await.map_err(|e| read_failed(&e))?;
    let view = wallets::wallet_of(&mut conn, caller.user_id)
        .await
        .map_err(from_read)?;
    Ok(query::answer(position, &view))
}

/// `POST /v1/me/payouts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutBody {
    pub amount: Money,
}

/// Requests a payout of part of the available balance; the transfer runs in the background.
#[utoipa::path(post, path = "/v1/me/payouts", tag = "payouts", request_body = PayoutBody, responses((status = 201, description = "requested: `id` is the wallet, `payout_id` the payout", body = crate::openapi::CommandAnswer)))]
pub(crate) async fn request_payout(
    State(state): State<AppState>,
    _caller: Caller,
    request: CommandRequest<PayoutBody>,
) -> Response {
    if let Err(e) = request.require_any(&[Role::Freelancer]) {
        return e.into_response();
    }
    command::run(&state, "request_payout", request, move |inv| async move {
        let payout_id = PayoutId(inv.ids.id("payout"));
        let user_id = inv.actor.user_id;
        let outcome = inv
            .services
            .wallet(
                user_id,
                WalletCommand::RequestPayout {
                    payout_id,
                    amount: inv.body.amount,
                    actor: inv.actor,
                    at: inv.services.now(),
                },
                &inv.ctx,
            )
            .await
            .map_err(|e| ApiError::from_service(e, &inv.ctx))?;
        Ok(Reply::created("/v1/me/payouts".to_owned(), &outcome).with("payout_id", payout_id))
    })
    .await
}

/// The caller's payouts, newest first, with their status (`pending`, `paid`, `failed` with
/// reason).
#[utoipa::path(get, path = "/v1/me/payouts", tag = "payouts", params(Paging), responses((status = 200, description = "the caller's payouts", body = crate::query::Listed<PayoutView>)))]
pub(crate) async fn my_payouts(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(paging): ApiQuery<Paging>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Freelancer])?;
    let limit = paging.limit()?;
    let position = min.wait(&state, &[wallets::NAME]).await?;
    let page = wallets::payouts_of(&state.pool, caller.user_id, paging.cursor.as_deref(), limit)
        .await
        .map_err(from_read)?;
    Ok(query::answer(position, &Listed::from(page)))
}

/// `?status=failed|pending&limit=`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AttentionQuery {
    /// `failed` (default) or `pending` (still waiting for the provider).
    pub status: Option<String>,
    /// The newest this many of each, 1–100, default 20.
    pub limit: Option<u32>,
}

/// Payouts and card refunds that failed (or still wait), for an admin to act on.
#[utoipa::path(get, path = "/v1/payouts", tag = "payouts", params(AttentionQuery), responses((status = 200, description = "payouts and card refunds in that status, newest first", body = AttentionView)))]
pub(crate) async fn needing_attention(
    State(state): State<AppState>,
    Caller(caller): Caller,
    min: MinPosition,
    ApiQuery(params): ApiQuery<AttentionQuery>,
) -> Result<Response, ApiError> {
    require_any(&caller, &[Role::Admin])?;
    let status = params.status.unwrap_or_else(|| "failed".to_owned());
    if status != "failed" && status != "pending" {
        return Err(ApiError::bad_request("status", "failed or pending"));
    }
    if params.limit.is_some_and(|l| !(1..=100).contains(&l)) {
        return Err(ApiError::bad_request("limit", "must be between 1 and 100"));
    }
    let position = min.wait(&state, &[wallets::NAME]).await?;
    let mut conn = state.pool.acquire().await.map_err(|e| read_failed(&e))?;
    let view = wallets::needing_attention(&mut conn, &status, params.limit)
        .await
        .map_err(from_read)?;
    Ok(query::answer(position, &view))
}

/// What the webhook answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Received {
    pub received: bool,
    /// Recorded and applied before: nothing changed now.
    pub duplicate: bool,
    /// What applying it did: `applied`, or `ignored: …` / `refused: …` with why.
    pub outcome: String,
}

/// A payment provider's notice (an account verified, a transfer paid or failed, a refund
/// failed), signed in `Gigledger-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>`
/// within five minutes of now. Recorded by its id: a repeat answers 200 and changes nothing;
/// an unknown type is recorded and ignored. No bearer token.
#[utoipa::path(post, path = "/v1/webhooks/payments", tag = "payouts", request_body(content = Object, description = "`{ id, type, created, data }`"), responses((status = 200, description = "recorded (repeats included)", body = Received), (status = 400, description = "a missing or bad signature, a stale timestamp, or a body that is not a notice", body = crate::openapi::Problem), (status = 503, description = "webhooks are not configured, or storage failed: the provider retries", body = crate::openapi::Problem)), security(("provider_signature" = [])))]
pub(crate) async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let received = receive(&state, signature, &body).await?;
    Ok(axum::Json(received).into_response())
}

/// Verifies, records and applies one notice: the webhook's work, shared with the simulated
/// provider's deliveries (which sign exactly as a real provider does).
pub async fn receive(
    state: &AppState,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Received, ApiError> {
    let Some(secret) = state.webhook_secret.as_deref() else {
        return Err(ApiError::Unavailable {
            detail: "provider notices are not accepted: no webhook secret is configured".to_owned(),
            outcome: None,
        });
    };
    notice::verify(secret, signature, body, state.services.now().timestamp())
        .map_err(|e| ApiError::bad_request(SIGNATURE_HEADER, e.to_string()))?;
    // Read once: the whole notice is recorded as it came, and its envelope read from it.
    let whole: serde_json::Value = crate::error::parse_json(body)?;
    let envelope = NoticeEnvelope::deserialize(&whole)
        .map_err(|e| ApiError::validation("body", format!("not a provider notice: {e}")))?;
    if envelope.id.is_empty()
        || envelope.id.len() > 200
        || envelope.id.chars().any(char::is_control)
    {
        return Err(ApiError::validation(
            "id",
            "1 to 200 characters, no control characters",
        ));
    }
    match notice::record(&state.pool, &envelope, &whole)
        .await
        .map_err(|e| read_failed(&e))?
    {
        Recorded::AlreadyApplied { outcome } => Ok(Received {
            received: true,
            duplicate: true,
            outcome,
        }),
        Recorded::New => {
            let outcome = apply(state, &envelope).await?;
            notice::mark_applied(&state.pool, &envelope.id, &outcome)
                .await
                .map_err(|e| read_failed(&e))?;
            Ok(Received {
                received: true,
                duplicate: false,
                outcome,
            })
        }
    }
}

/// The data of the notices we act on.
#[derive(Debug, Deserialize)]
struct NoticeData {
    user_id: Option<UserId>,
    account_id: Option<String>,
    payout_id: Option<PayoutId>,
    transfer_id: Option<String>,
    contract_id: Option<ContractId>,
    milestone_id: Option<MilestoneId>,
    reason: Option<String>,
}

/// Turns a notice into its command. A refusal by the domain (already done, not applicable) is
/// the notice's outcome, answered 2xx so the provider stops sending it; a failure of ours
/// (storage) is a 503 and the provider's retry applies it.
async fn apply(state: &AppState, envelope: &NoticeEnvelope) -> Result<String, ApiError> {
    let Ok(data) = serde_json::from_value::<NoticeData>(envelope.data.clone()) else {
        return Ok("ignored: its data is not the shape of any notice we act on".to_owned());
    };
    let ctx = RequestContext {
        correlation_id: Some(format!("notice:{}", envelope.id)),
        expected_version: None,
    };
    let at = state.services.now();
    let actor = Actor::system();
    // The provider's words, trimmed to what the domain keeps (never refused for their length).
    let reason = data
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("reported by the provider")
        .chars()
        .take(gigledger_domain::wallet::MAX_PAYOUT_FAILURE_CHARS)
        .collect::<String>();
    let result = match (envelope.notice_type.as_str(), &data) {
        (
            "account.verified",
            NoticeData {
                user_id: Some(user),
                account_id: Some(account_id),
                ..
            },
        ) => {
            state
                .services
                .wallet(
                    *user,
                    WalletCommand::VerifyPayoutAccount {
                        account_id: account_id.clone(),
                        actor,
                        at,
                    },
                    &ctx,
                )
                .await
        }
        (
            "transfer.paid",
            NoticeData {
                user_id: Some(user),
                payout_id: Some(payout_id),
                transfer_id: Some(transfer_id),
                ..
            },
        ) => {
            state
                .services
                .wallet(
                    *user,
                    WalletCommand::MarkPayoutPaid {
                        payout_id: *payout_id,
                        transfer_id: transfer_id.clone(),
                        actor,
                        at,
                    },
                    &ctx,
                )
                .await
        }
        (
            "transfer.failed",
            NoticeData {
                user_id: Some(user),
                payout_id: Some(payout_id),
                transfer_id,
                ..
            },
        ) => {
            // A notice about another transfer than the one that paid this payout changes
            // nothing (the payout's money left by the transfer it names).
            if let Some(named) = transfer_id {
                let (wallet, _) = state
                    .services
                    .load_wallet(*user)
                    .await
                    .map_err(|e| ApiError::from_service(e, &ctx))?;
                if let Some(gigledger_domain::PayoutStatus::Paid {
                    transfer_id: paid_by,
                }) = wallet.payout(*payout_id).map(|p| p.status)
                {
                    if &paid_by != named {
                        return Ok(format!(
                            "refused: the payout was paid by transfer {paid_by}, not {named}"
                        ));
                    }
                }
            }
            state
                .services
                .wallet(
                    *user,
                    WalletCommand::MarkPayoutFailed {
                        payout_id: *payout_id,
                        reason,
                        actor,
                        at,
                    },
                    &ctx,
                )
                .await
        }
        (
            "refund.failed",
            NoticeData {
                contract_id: Some(contract_id),
                milestone_id: Some(milestone_id),
                ..
            },
        ) => {
            state
                .services
                .escrow(
                    *contract_id,
                    EscrowCommand::RecordRefundFailed {
                        milestone_id: *milestone_id,
                        reason,
                        actor,
                        at,
                    },
                    &ctx,
                )
                .await
        }
        ("account.verified" | "transfer.paid" | "transfer.failed" | "refund.failed", _) => {
            return Ok("ignored: its data lacks what this type needs".to_owned());
        }
        (other, _) => return Ok(format!("ignored: unknown notice type {other:?}")),
    };
    let retry = |why: String| ApiError::Unavailable {
        detail: format!("the notice could not be applied yet ({why}); send it again"),
        outcome: None,
    };
    match result {
        Ok(_) | Err(ServiceError::Incomplete { .. }) => Ok("applied".to_owned()),
        // Not applied, and the provider's retry may well apply it: what it names is not written
        // yet (a notice overtaking the registration it is about), or the aggregate kept changing.
        Err(e @ ServiceError::Conflict { .. }) => Err(retry(e.to_string())),
        Err(e) if e.kind() == Some(ErrorKind::NotFound) => Err(retry(e.to_string())),
        // The domain's answer to this notice (already done, or not applicable): recorded as its
        // outcome, and answered 2xx so that the provider stops sending it.
        Err(e) if e.kind().is_some_and(|k| k != ErrorKind::Unavailable) => {
            Ok(format!("refused: {e}"))
        }
        Err(e) => Err(ApiError::from_service(e, &ctx)),
    }
}
