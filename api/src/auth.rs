//! Who is calling: a bearer token (JWT) verified into the domain's [`Actor`].
//!
//! Two key sources, one switch ([`AuthSettings`]): HS256 with the configured secret (the default,
//! and what `gigledger token` mints), or RS256/ES256 against an identity provider's JSON Web Key
//! Set file. Either way a token must name its algorithm among the ones its key source allows
//! (`alg: none` and anything else is refused before a key is looked at), carry `exp` (and `nbf` is
//! honoured), both within the configured leeway, and match the configured issuer and audience.
//! Its `sub` is the caller's user id (a UUID, never the platform's nil id) and its roles claim the
//! caller's roles; role names this build does not know grant nothing and are ignored, so an
//! identity provider's own roles (`offline_access`, …) do not lock people out.
//!
//! [`Caller`] is the axum extractor. Its rejection is a 401 `application/problem+json` body
//! (RFC 9457) with a `WWW-Authenticate: Bearer` header (RFC 6750). Verification uses the
//! `jsonwebtoken` crate (signatures by `ring`); this module only chooses the key and the rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use gigledger_domain::actor::{Actor, Role};
use gigledger_domain::ids::UserId;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::settings::AuthSettings;

/// The shortest HS256 secret accepted: RFC 7518 §3.2 asks for a key at least as long as the
/// hash (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// The algorithms a JWKS may verify. Anything else is refused, whatever the key set holds.
const JWKS_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// Why a token was refused. Every variant is a 401; the message says which rule failed (none of
/// them is a secret: the caller holds the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send `Authorization: Bearer <JWT>`")]
    Missing,
    #[error("the Authorization header is not `Bearer <JWT>`")]
    NotBearer,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm {0:?} is not accepted here")]
    UnexpectedAlgorithm(String),
    #[error("the token names a key this service does not know")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(String),
    #[error("the token's `sub` is missing or not a user id (a non-nil UUID)")]
    BadSubject,
    #[error("the token's roles claim is neither a role name nor a list of them")]
    BadRoles,
    /// A token sent in `?access_token=` (where it may end up in a proxy's or a browser's
    /// history) must be short-lived.
    #[error("a token in `?access_token=` must expire within {QUERY_TOKEN_MAX_SECS} seconds of now; send a longer-lived one as `Authorization: Bearer <JWT>`")]
    TooLongLived,
}

/// The longest a token sent in `?access_token=` may still be valid, in seconds (5 minutes).
pub const QUERY_TOKEN_MAX_SECS: u64 = 300;

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.into_kind() {
            K::ExpiredSignature => Self::Expired,
            K::ImmatureSignature => Self::NotYetValid,
            K::InvalidIssuer => Self::WrongIssuer,
            K::InvalidAudience => Self::WrongAudience,
            // jsonwebtoken reads a `sub` that is not a string as missing.
            K::MissingRequiredClaim(claim) if claim == "sub" => Self::BadSubject,
            K::MissingRequiredClaim(claim) => Self::MissingClaim(claim),
            K::InvalidAlgorithm | K::MissingAlgorithm => {
                Self::UnexpectedAlgorithm("(mismatch)".to_owned())
            }
            K::InvalidAlgorithmName => Self::UnexpectedAlgorithm("(unknown)".to_owned()),
            K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => Self::Malformed,
            // InvalidSignature, and key errors: the token did not verify under our key.
            _ => Self::BadSignature,
        }
    }
}

/// A configuration that cannot verify anything; `serve` and `token` stop with it.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("no token key is configured: set GIGLEDGER_JWT_SECRET (at least {MIN_SECRET_BYTES} bytes) or GIGLEDGER_JWT_JWKS_FILE / GIGLEDGER_JWT_JWKS_URL")]
    NoKey,
    #[error("GIGLEDGER_JWT_SECRET is {0} bytes; HS256 needs at least {MIN_SECRET_BYTES}")]
    ShortSecret(usize),
    #[error("cannot read the JWKS file {path}: {source}")]
    JwksRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the JWKS file {path} is not a JSON Web Key Set: {source}")]
    JwksParse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the JWKS file {0} holds no RS256 or P-256 ES256 signing key")]
    JwksEmpty(PathBuf),
    #[error("cannot fetch the JWKS at {url}: {reason}")]
    JwksFetch { url: String, reason: String },
    #[error("set one of GIGLEDGER_JWT_JWKS_FILE and GIGLEDGER_JWT_JWKS_URL, not both")]
    JwksTwice,
    #[error("a JWKS file needs the issuer its tokens carry: set GIGLEDGER_JWT_ISSUER")]
    JwksWithoutIssuer,
    /// An identity provider issues tokens for every application of a tenant, and many carry no
    /// `aud`: without an audience to demand, another application's token would be taken.
    #[error(
        "a JWKS file needs the audience tokens for gigledger carry: set GIGLEDGER_JWT_AUDIENCE"
    )]
    JwksWithoutAudience,
    #[error("`gigledger token` mints HS256 tokens with GIGLEDGER_JWT_SECRET, but this configuration verifies tokens against GIGLEDGER_JWT_JWKS_FILE and would refuse them")]
    MintWithJwks,
    #[error("cannot sign the token: {0}")]
    Sign(jsonwebtoken::errors::Error),
    #[error("the token's lifetime does not fit in a timestamp")]
    Lifetime,
}

/// One verification key of a key set.
struct SetKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

enum Keys {
    Secret(DecodingKey),
    /// A key set: from a file (read once), or from a URL (fetched at start and again every
    /// refresh interval, so an identity provider's key rotation is followed; a failed refresh
    /// keeps the keys it had).
    Set(std::sync::RwLock<Vec<SetKey>>),
}

/// Verifies bearer tokens under the configured key source and rules. Cheap to share
/// (`Arc<Authenticator>` in the app state).
pub struct Authenticator {
    keys: Keys,
    /// The rules every token meets; `algorithms` is set per token to the chosen key's.
    rules: Validation,
    roles_claim: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.keys {
            Keys::Secret(_) => "HS256 secret".to_owned(),
            Keys::Set(keys) => format!("JWKS ({} keys)", keys.read().map_or(0, |keys| keys.len())),
        };
        f.debug_struct("Authenticator")
            .field("keys", &source)
            .field("issuer", &self.rules.iss)
            .field("audience", &self.rules.aud)
            .field("leeway", &self.rules.leeway)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// The authenticator `settings` describe, or why they describe none.
    ///
    /// A JWKS URL is fetched by [`Authenticator::load`]; here it is refused.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        if let Some(url) = &settings.jwt_jwks_url {
            return Err(AuthConfigError::JwksFetch {
                url: url.to_string(),
                reason: "a JWKS URL is fetched at start (Authenticator::load)".to_owned(),
            });
        }
        Self::with_keys(settings, None)
    }

    /// The authenticator `settings` describe, fetching the key set first when they name a URL.
    pub async fn load(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        match &settings.jwt_jwks_url {
            None => Self::from_settings(settings),
            Some(url) => {
                let keys = fetch_jwks(url).await?;
                Self::with_keys(settings, Some(keys))
            }
        }
    }

    /// Fetches the configured JWKS URL every `every` until the future is dropped, replacing the
    /// keys on success and keeping them on failure (logged).
    pub async fn refresh_keys(self: Arc<Self>, url: url::Url, every: std::time::Duration) {
        loop {
            tokio::time::sleep(every).await;
            match fetch_jwks(&url).await {
                Ok(fresh) => {
                    if let Keys::Set(keys) = &self.keys {
                        if let Ok(mut keys) = keys.write() {
                            *keys = fresh;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "keeping the JWKS keys it had"),
            }
        }
    }

    fn with_keys(
        settings: &AuthSettings,
        fetched: Option<Vec<SetKey>>,
    ) -> Result<Self, AuthConfigError> {
        if settings.jwt_jwks_file.is_some() && settings.jwt_jwks_url.is_some() {
            return Err(AuthConfigError::JwksTwice);
        }
        let set = match (&settings.jwt_jwks_file, fetched) {
            (Some(path), _) => Some(read_jwks(path)?),
            (None, Some(keys)) => Some(keys),
            (None, None) => None,
        };
        let keys = match set {
            Some(set) => {
                if settings.jwt_issuer.is_none() {
                    return Err(AuthConfigError::JwksWithoutIssuer);
                }
                if settings.jwt_audience.is_none() {
                    return Err(AuthConfigError::JwksWithoutAudience);
                }
                Keys::Set(std::sync::RwLock::new(set))
            }
            None => Keys::Secret(DecodingKey::from_secret(secret_of(settings)?)),
        };
        let mut rules = Validation::new(Algorithm::HS256);
        rules.leeway = settings.jwt_leeway_secs;
        rules.validate_exp = true;
        rules.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &settings.jwt_issuer {
            rules.set_issuer(&[issuer]);
            required.push("iss");
        }
        // Left unset, jsonwebtoken still refuses a token that names an audience: it was meant for
        // another service.
        if let Some(audience) = &settings.jwt_audience {
            rules.set_audience(&[audience]);
            required.push("aud");
        }
        rules.set_required_spec_claims(&required);
        Ok(Self {
            keys,
            rules,
            roles_claim: settings.jwt_roles_claim.clone(),
        })
    }

    /// The caller a token proves, or why it proves none.
    pub fn verify(&self, token: &str) -> Result<Actor, AuthError> {
        let claims = self.verified_claims(token)?;
        self.actor_of(&claims)
    }

    /// The same for a token that must also expire within `max_secs` of `now` (Unix seconds):
    /// the rule for a token sent in a URL ([`QUERY_TOKEN_MAX_SECS`]).
    pub fn verify_short_lived(
        &self,
        token: &str,
        max_secs: u64,
        now: u64,
    ) -> Result<Actor, AuthError> {
        let claims = self.verified_claims(token)?;
        // `exp` is required and checked by the rules; a number that is not a whole one of
        // seconds (or none) cannot show it is short enough.
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(AuthError::TooLongLived)?;
        if exp > now.saturating_add(max_secs) {
            return Err(AuthError::TooLongLived);
        }
        self.actor_of(&claims)
    }

    /// The claims of a token that verifies under the key source and the rules.
    fn verified_claims(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        // Read the algorithm ourselves first: `none` (or any name jsonwebtoken does not know)
        // is then refused as an algorithm, not as a garbled token.
        let named = header_algorithm(token)?;
        let data = match &self.keys {
            Keys::Secret(key) => {
                if named != "HS256" {
                    return Err(AuthError::UnexpectedAlgorithm(named));
                }
                let mut rules = self.rules.clone();
                rules.algorithms = vec![Algorithm::HS256];
                jsonwebtoken::decode::<Map<String, Value>>(token, key, &rules)?
            }
            Keys::Set(keys) => {
                let Some(algorithm) = JWKS_ALGORITHMS
                    .into_iter()
                    .find(|a| algorithm_name(*a) == named)
                else {
                    return Err(AuthError::UnexpectedAlgorithm(named));
                };
                let header = jsonwebtoken::decode_header(token)?;
                let keys = keys.read().map_err(|_| AuthError::UnknownKey)?;
                let key = choose_key(&keys, header.kid.as_deref(), algorithm)?;
                let mut rules = self.rules.clone();
                rules.algorithms = vec![algorithm];
                jsonwebtoken::decode::<Map<String, Value>>(token, key, &rules)?
            }
        };
        Ok(data.claims)
    }

    fn actor_of(&self, claims: &Map<String, Value>) -> Result<Actor, AuthError> {
        let user = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            // The nil id is the platform's own (`Actor::system`); no token may claim it.
            .filter(|id| !id.is_nil())
            .ok_or(AuthError::BadSubject)?;
        let names: Vec<&str> = match claims.get(&self.roles_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many
                .iter()
                .map(|v| v.as_str().ok_or(AuthError::BadRoles))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(AuthError::BadRoles),
        };
        let roles: BTreeSet<Role> = names.into_iter().filter_map(parse_role).collect();
        Ok(Actor::new(UserId(user), roles.into_iter().collect()))
    }
}

/// The role a wire name (`client`, `freelancer`, `auditor`, `analyst`, `admin`) stands for.
#[must_use]
pub fn parse_role(name: &str) -> Option<Role> {
    [
        Role::Client,
        Role::Freelancer,
        Role::Auditor,
        Role::Analyst,
        Role::Admin,
    ]
    .into_iter()
    .find(|r| r.as_str() == name)
}

/// `parse_role` for clap: the error lists the names.
pub fn parse_role_arg(name: &str) -> Result<Role, String> {
    parse_role(name).ok_or_else(|| {
        format!("unknown role {name:?}: one of client, freelancer, auditor, analyst, admin")
    })
}

/// A dev token for `sub` with `roles`, valid from `now` (Unix seconds) for `ttl_secs`, signed
/// HS256 with the configured secret and carrying the configured issuer and audience, so that
/// [`Authenticator::verify`] under the same settings accepts it.
pub fn mint(
    settings: &AuthSettings,
    sub: Uuid,
    roles: &[Role],
    ttl_secs: u64,
    now: u64,
) -> Result<String, AuthConfigError> {
    if settings.jwt_jwks_file.is_some() || settings.jwt_jwks_url.is_some() {
        return Err(AuthConfigError::MintWithJwks);
    }
    let secret = secret_of(settings)?;
    let exp = now.checked_add(ttl_secs).ok_or(AuthConfigError::Lifetime)?;
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::from(sub.to_string()));
    claims.insert(
        settings.jwt_roles_claim.clone(),
        Value::from(roles.iter().map(|r| r.as_str()).collect::<Vec<_>>()),
    );
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(exp));
    if let Some(issuer) = &settings.jwt_issuer {
        claims.insert("iss".into(), Value::from(issuer.as_str()));
    }
    if let Some(audience) = &settings.jwt_audience {
        claims.insert("aud".into(), Value::from(audience.as_str()));
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(AuthConfigError::Sign)
}

fn secret_of(settings: &AuthSettings) -> Result<&[u8], AuthConfigError> {
    let secret = settings
        .jwt_secret
        .as_ref()
        .ok_or(AuthConfigError::NoKey)?
        .expose()
        .as_bytes();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(AuthConfigError::ShortSecret(secret.len()));
    }
    Ok(secret)
}

/// The `alg` of a token's header, read without trusting anything else in it.
fn header_algorithm(token: &str) -> Result<String, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let header: Value = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    header
        .get("alg")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or(AuthError::Malformed)
}

const fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        _ => "HS256",
    }
}

/// The key a token's `kid` names, which must be for the token's algorithm; a token without a
/// `kid` only when the set has exactly one key for that algorithm.
fn choose_key<'a>(
    keys: &'a [SetKey],
    kid: Option<&str>,
    algorithm: Algorithm,
) -> Result<&'a DecodingKey, AuthError> {
    let chosen = match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or(AuthError::UnknownKey)?,
        None => {
            let mut same = keys.iter().filter(|k| k.algorithm == algorithm);
            match (same.next(), same.next()) {
                (Some(only), None) => only,
                _ => return Err(AuthError::UnknownKey),
            }
        }
    };
    if chosen.algorithm != algorithm {
        return Err(AuthError::UnexpectedAlgorithm(
            algorithm_name(algorithm).to_owned(),
        ));
    }
    Ok(&chosen.key)
}

/// The signing keys of a JWKS file usable with RS256 or ES256; encryption keys and other
/// algorithms are left out.
fn read_jwks(path: &Path) -> Result<Vec<SetKey>, AuthConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::JwksRead {
        path: path.to_owned(),
        source,
    })?;
    let set: JwkSet = serde_json::from_str(&text).map_err(|source| AuthConfigError::JwksParse {
        path: path.to_owned(),
        source,
    })?;
    let keys = signing_keys(&set);
    if keys.is_empty() {
        return Err(AuthConfigError::JwksEmpty(path.to_owned()));
    }
    Ok(keys)
}

/// How long fetching a JWKS URL may take.
const JWKS_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The signing keys of the key set at `url` (an identity provider's `jwks_uri`).
async fn fetch_jwks(url: &url::Url) -> Result<Vec<SetKey>, AuthConfigError> {
    let failed = |reason: String| AuthConfigError::JwksFetch {
        url: url.to_string(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(JWKS_FETCH_TIMEOUT)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("it answered {}", response.status())));
    }
    let set: JwkSet = response
        .json()
        .await
        .map_err(|e| failed(format!("not a JSON Web Key Set: {e}")))?;
    let keys = signing_keys(&set);
    if keys.is_empty() {
        return Err(failed(
            "no RS256 or P-256 ES256 signing key in it".to_owned(),
        ));
    }
    Ok(keys)
}

/// The keys of `set` usable to verify RS256 or ES256 signatures.
fn signing_keys(set: &JwkSet) -> Vec<SetKey> {
    set.keys
        .iter()
        .filter(|jwk| {
            matches!(
                jwk.common.public_key_use,
                None | Some(PublicKeyUse::Signature)
            )
        })
        .filter_map(|jwk| {
            let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
                (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                    if ec.curve == EllipticCurve::P256 =>
                {
                    Algorithm::ES256
                }
                _ => return None,
            };
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(SetKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            })
        })
        .collect()
}

/// `403` unless `actor` has one of `roles`: a route's role rule (API.md's "who"); which side of a
/// deal the caller is on is the domain's to decide.
pub fn require_any(actor: &Actor, roles: &[Role]) -> Result<(), crate::error::ApiError> {
    if roles.iter().any(|role| actor.has_role(*role)) {
        return Ok(());
    }
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    Err(crate::error::ApiError::Forbidden {
        detail: format!("this needs the role {}", names.join(" or ")),
    })
}

/// The authenticated caller of a request. Extracting it from a request without a valid bearer
/// token answers 401 (see [`AuthError`]'s response).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub Actor);

impl<S> FromRequestParts<S> for Caller
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Verified once per request: a handler that takes the caller ahead of its path (so a
        // request without a token is a 401 before anything else) and again in its command.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let authenticator = Arc::<Authenticator>::from_ref(state);
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::NotBearer);
        }
        let caller = authenticator.verify(token.trim()).map(Caller)?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// The caller of `GET /v1/me/stream`: the bearer header as everywhere (it wins when sent), or,
/// since a browser's `EventSource` cannot set headers, a token in `?access_token=` that expires
/// within [`QUERY_TOKEN_MAX_SECS`]. Only that route takes this extractor: every other route reads
/// the header alone ([`Caller`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCaller(pub Actor);

/// The query parameter [`StreamCaller`] reads.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

impl<S> FromRequestParts<S> for StreamCaller
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            return Caller::from_request_parts(parts, state)
                .await
                .map(|Caller(actor)| Self(actor));
        }
        let token = parts.uri.query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(name, _)| name == ACCESS_TOKEN_PARAM)
                .map(|(_, value)| value.into_owned())
        });
        let token = token.ok_or(AuthError::Missing)?;
        let authenticator = Arc::<Authenticator>::from_ref(state);
        let now = jsonwebtoken::get_current_timestamp();
        authenticator
            .verify_short_lived(token.trim(), QUERY_TOKEN_MAX_SECS, now)
            .map(Self)
    }
}

/// The problem type of every 401 (the one the shared `ApiError::Unauthorized` uses), until that
/// type takes this response over.
pub const UNAUTHENTICATED_TYPE: &str = "/problems/unauthorized";

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": UNAUTHENTICATED_TYPE,
            "title": "Authentication required",
            "status": 401,
            "detail": self.to_string(),
        });
        // RFC 6750 §3: no error code when no credentials were sent, `invalid_token` otherwise.
        let challenge = match self {
            Self::Missing => HeaderValue::from_static("Bearer"),
            _ => HeaderValue::from_static("Bearer error=\"invalid_token\""),
        };
        (
            StatusCode::UNAUTHORIZED,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                ),
                (header::WWW_AUTHENTICATE, challenge),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a test secret that is long enough for hs256";
    const RSA_PRIVATE: &str = include_str!("../tests/fixtures/rs256-private.pem");
    const RSA_OTHER_PRIVATE: &str = include_str!("../tests/fixtures/rs256-other-private.pem");
    const EC_PRIVATE: &str = include_str!("../tests/fixtures/es256-private.pem");
    const JWKS: &str = include_str!("../tests/fixtures/jwks.json");

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn secret_settings() -> AuthSettings {
        AuthSettings {
            jwt_secret: Some(SECRET.parse().unwrap()),
            ..AuthSettings::default()
        }
    }

    fn claims(sub: &str) -> Map<String, Value> {
        let mut c = Map::new();
        c.insert("sub".into(), sub.into());
        c.insert("roles".into(), serde_json::json!(["client", "admin"]));
        c.insert("exp".into(), (now() + 600).into());
        c
    }

    fn with(mut c: Map<String, Value>, key: &str, value: Value) -> Map<String, Value> {
        c.insert(key.into(), value);
        c
    }

    fn hs(algorithm: Algorithm, secret: &str, c: &Map<String, Value>) -> String {
        jsonwebtoken::encode(
            &Header::new(algorithm),
            c,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn hs256(c: &Map<String, Value>) -> String {
        hs(Algorithm::HS256, SECRET, c)
    }

    fn user() -> String {
        Uuid::now_v7().to_string()
    }

    fn verify(settings: &AuthSettings, token: &str) -> Result<Actor, AuthError> {
        Authenticator::from_settings(settings)
            .unwrap()
            .verify(token)
    }

    /// A token with the given header and claims and a signature that is not one.
    fn unsigned(header: &Value, c: &Map<String, Value>) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(Value::Object(c.clone()).to_string().as_bytes()),
            b64(b"sig")
        )
    }

    #[test]
    fn a_valid_hs256_token_becomes_the_actor_with_its_roles() {
        let sub = user();
        let actor = verify(&secret_settings(), &hs256(&claims(&sub))).unwrap();
        assert_eq!(actor.user_id.0.to_string(), sub);
        assert_eq!(actor.roles, vec![Role::Client, Role::Admin]);
    }

    #[test]
    fn unknown_role_names_grant_nothing_and_a_single_name_is_one_role() {
        let c = with(
            claims(&user()),
            "roles",
            serde_json::json!(["offline_access", "freelancer", "freelancer"]),
        );
        let actor = verify(&secret_settings(), &hs256(&c)).unwrap();
        assert_eq!(actor.roles, vec![Role::Freelancer]);

        let c = with(claims(&user()), "roles", "auditor".into());
        let actor = verify(&secret_settings(), &hs256(&c)).unwrap();
        assert_eq!(actor.roles, vec![Role::Auditor]);

        let c = with(claims(&user()), "roles", serde_json::json!([1]));
        assert_eq!(
            verify(&secret_settings(), &hs256(&c)),
            Err(AuthError::BadRoles)
        );
    }

    #[test]
    fn roles_are_read_from_the_configured_claim() {
        let settings = AuthSettings {
            jwt_roles_claim: "https://gigledger.dev/roles".into(),
            ..secret_settings()
        };
        let c = with(
            claims(&user()),
            "https://gigledger.dev/roles",
            serde_json::json!(["analyst"]),
        );
        assert_eq!(
            verify(&settings, &hs256(&c)).unwrap().roles,
            vec![Role::Analyst]
        );
    }

    #[test]
    fn an_expired_token_is_refused_beyond_the_leeway_only() {
        let c = with(claims(&user()), "exp", (now() - 3600).into());
        assert_eq!(
            verify(&secret_settings(), &hs256(&c)),
            Err(AuthError::Expired)
        );
        // Expired 5 s ago: inside the default 30 s leeway, outside a zero leeway.
        let c = with(claims(&user()), "exp", (now() - 5).into());
        assert!(verify(&secret_settings(), &hs256(&c)).is_ok());
        let strict = AuthSettings {
            jwt_leeway_secs: 0,
            ..secret_settings()
        };
        assert_eq!(verify(&strict, &hs256(&c)), Err(AuthError::Expired));
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        let mut c = claims(&user());
        c.remove("exp");
        assert_eq!(
            verify(&secret_settings(), &hs256(&c)),
            Err(AuthError::MissingClaim("exp".into()))
        );
        let c = with(claims(&user()), "exp", "tomorrow".into());
        assert_eq!(
            verify(&secret_settings(), &hs256(&c)),
            Err(AuthError::MissingClaim("exp".into()))
        );
    }

    #[test]
    fn a_token_not_valid_yet_is_refused_beyond_the_leeway_only() {
        let c = with(claims(&user()), "nbf", (now() + 3600).into());
        assert_eq!(
            verify(&secret_settings(), &hs256(&c)),
            Err(AuthError::NotYetValid)
        );
        let c = with(claims(&user()), "nbf", (now() + 5).into());
        assert!(verify(&secret_settings(), &hs256(&c)).is_ok());
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = hs(
            Algorithm::HS256,
            "another secret, just as long as the real one",
            &claims(&user()),
        );
        assert_eq!(
            verify(&secret_settings(), &token),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn a_token_whose_claims_were_changed_after_signing_is_refused() {
        let token = hs256(&claims(&user()));
        let forged = unsigned(
            &serde_json::json!({"alg": "HS256", "typ": "JWT"}),
            &claims(&user()),
        );
        let (head_and_claims, _) = forged.rsplit_once('.').unwrap();
        let (_, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(
            verify(
                &secret_settings(),
                &format!("{head_and_claims}.{signature}")
            ),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let settings = AuthSettings {
            jwt_issuer: Some("https://id.gigledger.dev".into()),
            jwt_audience: Some("gigledger-api".into()),
            ..secret_settings()
        };
        let good = with(
            with(claims(&user()), "iss", "https://id.gigledger.dev".into()),
            "aud",
            "gigledger-api".into(),
        );
        assert!(verify(&settings, &hs256(&good)).is_ok());
        assert_eq!(
            verify(
                &settings,
                &hs256(&with(good.clone(), "iss", "https://evil.example".into()))
            ),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            verify(
                &settings,
                &hs256(&with(good.clone(), "aud", "another-api".into()))
            ),
            Err(AuthError::WrongAudience)
        );
        let mut no_issuer = good.clone();
        no_issuer.remove("iss");
        assert_eq!(
            verify(&settings, &hs256(&no_issuer)),
            Err(AuthError::MissingClaim("iss".into()))
        );
        let mut no_audience = good;
        no_audience.remove("aud");
        assert_eq!(
            verify(&settings, &hs256(&no_audience)),
            Err(AuthError::MissingClaim("aud".into()))
        );
    }

    #[test]
    fn a_token_for_some_audience_is_refused_when_none_is_configured() {
        let c = with(claims(&user()), "aud", "another-api".into());
        assert_eq!(
            verify(&secret_settings(), &hs256(&c)),
            Err(AuthError::WrongAudience)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let token = unsigned(&serde_json::json!({"alg": "none"}), &claims(&user()));
        assert_eq!(
            verify(&secret_settings(), &token),
            Err(AuthError::UnexpectedAlgorithm("none".into()))
        );
        // Without a signature part at all, as `none` tokens are usually sent.
        let (unsigned_part, _) = token.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&secret_settings(), &format!("{unsigned_part}.")),
            Err(AuthError::UnexpectedAlgorithm("none".into()))
        );
    }

    #[test]
    fn another_algorithm_than_the_key_sources_is_refused() {
        // Signed correctly with the secret, but HS512 is not what this service accepts.
        let token = hs(Algorithm::HS512, SECRET, &claims(&user()));
        assert_eq!(
            verify(&secret_settings(), &token),
            Err(AuthError::UnexpectedAlgorithm("HS512".into()))
        );
        // An RS256 token where the secret is configured.
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims(&user()),
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            verify(&secret_settings(), &token),
            Err(AuthError::UnexpectedAlgorithm("RS256".into()))
        );
    }

    #[test]
    fn a_malformed_or_missing_sub_is_refused() {
        for sub in [
            Value::from("not-a-uuid"),
            Value::from(42),
            Value::from(Uuid::nil().to_string()),
        ] {
            let c = with(claims(&user()), "sub", sub.clone());
            assert_eq!(
                verify(&secret_settings(), &hs256(&c)),
                Err(AuthError::BadSubject),
                "{sub}"
            );
        }
        let mut c = claims(&user());
        c.remove("sub");
        assert_eq!(
            verify(&secret_settings(), &hs256(&c)),
            Err(AuthError::BadSubject)
        );
    }

    #[test]
    fn the_query_token_rule_takes_only_tokens_that_expire_soon() {
        let authenticator = Authenticator::from_settings(&secret_settings()).unwrap();
        let at = now();
        let expiring_in = |secs: u64| {
            hs256(&with(
                claims(&user()),
                "exp",
                at.saturating_add(secs).into(),
            ))
        };
        let short = authenticator.verify_short_lived(
            &expiring_in(QUERY_TOKEN_MAX_SECS),
            QUERY_TOKEN_MAX_SECS,
            at,
        );
        assert!(short.is_ok(), "{short:?}");
        assert_eq!(
            authenticator.verify_short_lived(
                &expiring_in(QUERY_TOKEN_MAX_SECS + 1),
                QUERY_TOKEN_MAX_SECS,
                at
            ),
            Err(AuthError::TooLongLived)
        );
        // Every other rule still holds first.
        let expired = hs256(&with(claims(&user()), "exp", (at - 3600).into()));
        assert_eq!(
            authenticator.verify_short_lived(&expired, QUERY_TOKEN_MAX_SECS, at),
            Err(AuthError::Expired)
        );
        let wrong_key = hs(
            Algorithm::HS256,
            "another secret that is long enough for hs256",
            &claims(&user()),
        );
        assert_eq!(
            authenticator.verify_short_lived(&wrong_key, QUERY_TOKEN_MAX_SECS, at),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_a_malformed_token() {
        for token in ["", "abc", "a.b.c", "a.b.c.d", "e30.e30.e30"] {
            assert_eq!(
                verify(&secret_settings(), token),
                Err(AuthError::Malformed),
                "{token:?}"
            );
        }
    }

    #[test]
    fn a_missing_or_short_secret_is_a_configuration_error() {
        assert!(matches!(
            Authenticator::from_settings(&AuthSettings::default()),
            Err(AuthConfigError::NoKey)
        ));
        let short = AuthSettings {
            jwt_secret: Some("short".parse().unwrap()),
            ..AuthSettings::default()
        };
        assert!(matches!(
            Authenticator::from_settings(&short),
            Err(AuthConfigError::ShortSecret(5))
        ));
        assert_eq!(
            format!("{:?}", secret_settings().jwt_secret),
            "Some(Secret(<redacted>))"
        );
    }

    #[test]
    fn a_minted_token_is_accepted_under_the_same_settings() {
        let settings = AuthSettings {
            jwt_issuer: Some("gigledger".into()),
            jwt_audience: Some("gigledger-api".into()),
            ..secret_settings()
        };
        let sub = Uuid::now_v7();
        let token = mint(&settings, sub, &[Role::Freelancer], 60, now()).unwrap();
        let actor = verify(&settings, &token).unwrap();
        assert_eq!(actor, Actor::new(UserId(sub), vec![Role::Freelancer]));
        // Its lifetime is the one asked for.
        let expired = mint(&settings, sub, &[Role::Freelancer], 60, now() - 3600).unwrap();
        assert_eq!(verify(&settings, &expired), Err(AuthError::Expired));
    }

    /// A JWKS file of the test's own, removed when dropped.
    struct JwksFile(PathBuf);

    impl JwksFile {
        fn write(contents: &str) -> Self {
            let path = std::env::temp_dir().join(format!("gigledger-jwks-{}.json", Uuid::now_v7()));
            std::fs::write(&path, contents).unwrap();
            Self(path)
        }
    }

    impl Drop for JwksFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const ISSUER: &str = "https://id.example.test/";

    fn jwks_settings(file: &JwksFile) -> AuthSettings {
        AuthSettings {
            jwt_jwks_file: Some(file.0.clone()),
            jwt_issuer: Some(ISSUER.into()),
            jwt_audience: Some("gigledger-api".into()),
            // A secret configured too is ignored: the key set decides.
            jwt_secret: Some(SECRET.parse().unwrap()),
            ..AuthSettings::default()
        }
    }

    fn idp_claims(sub: &str) -> Map<String, Value> {
        with(
            with(claims(sub), "iss", ISSUER.into()),
            "aud",
            "gigledger-api".into(),
        )
    }

    fn signed(
        algorithm: Algorithm,
        kid: Option<&str>,
        pem: &str,
        c: &Map<String, Value>,
    ) -> String {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        let key = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .unwrap();
        jsonwebtoken::encode(&header, c, &key).unwrap()
    }

    #[test]
    fn an_rs256_token_is_accepted_against_a_jwks_file() {
        let file = JwksFile::write(JWKS);
        let settings = jwks_settings(&file);
        let sub = user();
        let token = signed(
            Algorithm::RS256,
            Some("test-rsa"),
            RSA_PRIVATE,
            &idp_claims(&sub),
        );
        let actor = verify(&settings, &token).unwrap();
        assert_eq!(actor.user_id.0.to_string(), sub);
        assert_eq!(actor.roles, vec![Role::Client, Role::Admin]);
    }

    #[test]
    fn an_es256_token_is_accepted_against_a_jwks_file() {
        let file = JwksFile::write(JWKS);
        let token = signed(
            Algorithm::ES256,
            Some("test-ec"),
            EC_PRIVATE,
            &idp_claims(&user()),
        );
        assert!(verify(&jwks_settings(&file), &token).is_ok());
        // Without a kid: the set has one ES256 key, so it is that one.
        let token = signed(Algorithm::ES256, None, EC_PRIVATE, &idp_claims(&user()));
        assert!(verify(&jwks_settings(&file), &token).is_ok());
    }

    #[test]
    fn jwks_tokens_are_refused_for_each_rule() {
        let file = JwksFile::write(JWKS);
        let settings = jwks_settings(&file);
        let c = idp_claims(&user());
        let rs = |kid: &str, pem: &str, c: &Map<String, Value>| {
            signed(Algorithm::RS256, Some(kid), pem, c)
        };
        assert_eq!(
            verify(&settings, &rs("test-rsa", RSA_OTHER_PRIVATE, &c)),
            Err(AuthError::BadSignature),
            "signed by a key the set does not hold"
        );
        assert_eq!(
            verify(&settings, &rs("nobody", RSA_PRIVATE, &c)),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            verify(&settings, &rs("test-ec", RSA_PRIVATE, &c)),
            Err(AuthError::UnexpectedAlgorithm("RS256".into())),
            "an RS256 token naming the EC key"
        );
        assert_eq!(
            verify(
                &settings,
                &rs(
                    "test-rsa",
                    RSA_PRIVATE,
                    &with(c.clone(), "iss", "https://other/".into())
                )
            ),
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            verify(
                &settings,
                &rs(
                    "test-rsa",
                    RSA_PRIVATE,
                    &with(c.clone(), "aud", "other".into())
                )
            ),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            verify(
                &settings,
                &rs(
                    "test-rsa",
                    RSA_PRIVATE,
                    &with(c.clone(), "exp", (now() - 3600).into())
                )
            ),
            Err(AuthError::Expired)
        );
        // The configured secret signs nothing here: HS256 is not a JWKS algorithm.
        assert_eq!(
            verify(&settings, &hs256(&c)),
            Err(AuthError::UnexpectedAlgorithm("HS256".into()))
        );
        let none = unsigned(&serde_json::json!({"alg": "none", "kid": "test-rsa"}), &c);
        assert_eq!(
            verify(&settings, &none),
            Err(AuthError::UnexpectedAlgorithm("none".into()))
        );
        let rs512 = signed(Algorithm::RS512, Some("test-rsa"), RSA_PRIVATE, &c);
        assert_eq!(
            verify(&settings, &rs512),
            Err(AuthError::UnexpectedAlgorithm("RS512".into()))
        );
    }

    #[test]
    fn a_jwks_needs_an_issuer_and_a_usable_signing_key() {
        let file = JwksFile::write(JWKS);
        let no_issuer = AuthSettings {
            jwt_issuer: None,
            ..jwks_settings(&file)
        };
        assert!(matches!(
            Authenticator::from_settings(&no_issuer),
            Err(AuthConfigError::JwksWithoutIssuer)
        ));
        let no_audience = AuthSettings {
            jwt_audience: None,
            ..jwks_settings(&file)
        };
        assert!(matches!(
            Authenticator::from_settings(&no_audience),
            Err(AuthConfigError::JwksWithoutAudience)
        ));
        let symmetric = JwksFile::write(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#);
        assert!(matches!(
            Authenticator::from_settings(&jwks_settings(&symmetric)),
            Err(AuthConfigError::JwksEmpty(_))
        ));
        let garbage = JwksFile::write("not json");
        assert!(matches!(
            Authenticator::from_settings(&jwks_settings(&garbage)),
            Err(AuthConfigError::JwksParse { .. })
        ));
        let missing = AuthSettings {
            jwt_jwks_file: Some(std::env::temp_dir().join("gigledger-no-such-jwks.json")),
            ..jwks_settings(&file)
        };
        assert!(matches!(
            Authenticator::from_settings(&missing),
            Err(AuthConfigError::JwksRead { .. })
        ));
        assert!(matches!(
            mint(
                &jwks_settings(&file),
                Uuid::now_v7(),
                &[Role::Client],
                60,
                now()
            ),
            Err(AuthConfigError::MintWithJwks)
        ));
    }

    mod extractor {
        use axum::body::Body;
        use axum::http::Request;
        use axum::routing::get;
        use axum::Router;
        use tower::ServiceExt as _;

        use super::*;

        async fn whoami(Caller(actor): Caller) -> String {
            actor.user_id.0.to_string()
        }

        fn app() -> Router {
            let auth = Arc::new(Authenticator::from_settings(&secret_settings()).unwrap());
            Router::new().route("/whoami", get(whoami)).with_state(auth)
        }

        async fn call(authorization: Option<&str>) -> (StatusCode, Option<String>, Value) {
            let mut request = Request::get("/whoami");
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = app()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned());
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status, content_type, body)
        }

        #[tokio::test]
        async fn a_valid_bearer_token_reaches_the_handler() {
            let sub = user();
            let token = hs256(&claims(&sub));
            let response = app()
                .oneshot(
                    Request::get("/whoami")
                        .header(header::AUTHORIZATION, format!("bearer {token}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            assert_eq!(bytes, sub.as_bytes());
        }

        #[tokio::test]
        async fn every_refusal_is_a_401_problem() {
            let expired = hs256(&with(claims(&user()), "exp", (now() - 3600).into()));
            let cases = [
                (None, "no bearer token"),
                (Some("Basic dXNlcjpwYXNz".to_owned()), "not `Bearer"),
                (Some("Bearer".to_owned()), "not `Bearer"),
                (Some("Bearer abc".to_owned()), "well-formed"),
                (Some(format!("Bearer {expired}")), "expired"),
            ];
            for (authorization, detail) in cases {
                let (status, content_type, body) = call(authorization.as_deref()).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
                assert_eq!(content_type.as_deref(), Some("application/problem+json"));
                assert_eq!(body["type"], UNAUTHENTICATED_TYPE);
                assert_eq!(body["status"], 401);
                assert_eq!(body["title"], "Authentication required");
                let text = body["detail"].as_str().unwrap();
                assert!(text.contains(detail), "{authorization:?}: {text}");
            }
        }

        #[tokio::test]
        async fn the_challenge_says_whether_a_token_was_sent() {
            let response = app()
                .oneshot(Request::get("/whoami").body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
            let response = app()
                .oneshot(
                    Request::get("/whoami")
                        .header(header::AUTHORIZATION, "Bearer x.y.z")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(
                response.headers()[header::WWW_AUTHENTICATE],
                "Bearer error=\"invalid_token\""
            );
        }
    }
}
