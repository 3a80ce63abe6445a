//! One module per resource, each adding its routes to the [`Table`] with, for every route, who may
//! call it (API.md's "who" column; the handler enforces it, and the domain decides which side of a
//! deal the caller is on). [`table`] gathers them; [`crate::app::app`] puts the layers around, and
//! [`crate::openapi`] documents exactly the routes of the table.

pub mod analytics;
pub mod audit;
pub mod contracts;
pub mod disputes;
pub mod gigs;
pub mod health;
pub mod me;
pub mod payouts;
pub mod proposals;
pub mod reviews;
pub mod users;

use axum::handler::Handler;
use axum::routing::{on, MethodFilter};
use axum::Router;

use crate::state::AppState;

/// One route as the table knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// `GET`, `POST`, `PATCH`, `PUT`.
    pub method: &'static str,
    /// The path template as axum and OpenAPI write it (`/v1/gigs/{gig_id}`).
    pub path: &'static str,
    /// Who may call it; [`PUBLIC`] for the operations routes that need no token.
    pub who: &'static str,
}

/// The `who` of a route that needs no bearer token.
pub const PUBLIC: &str = "anyone, no token";

/// The `who` of the webhook: the payment provider, by its signature, with no bearer token.
pub const PROVIDER: &str = "the payment provider (its signature header; no bearer token)";

/// The router and the list of its routes, built together so that neither can have a route the
/// other lacks.
pub struct Table {
    router: Router<AppState>,
    routes: Vec<RouteInfo>,
}

macro_rules! method {
    ($name:ident, $filter:ident, $text:literal) => {
        pub fn $name<H, T>(self, path: &'static str, who: &'static str, handler: H) -> Self
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            self.add(MethodFilter::$filter, $text, path, who, handler)
        }
    };
}

impl Table {
    fn new() -> Self {
        Self {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    fn add<H, T>(
        mut self,
        filter: MethodFilter,
        method: &'static str,
        path: &'static str,
        who: &'static str,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, on(filter, handler));
        self.routes.push(RouteInfo { method, path, who });
        self
    }

    method!(get, GET, "GET");
    method!(post, POST, "POST");
    method!(patch, PATCH, "PATCH");
    method!(put, PUT, "PUT");

    /// The routes, in the order they were added.
    pub fn routes(&self) -> &[RouteInfo] {
        &self.routes
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// Every route of the API.
pub fn table() -> Table {
    let table = Table::new();
    let table = health::routes(table);
    let table = gigs::routes(table);
    let table = proposals::routes(table);
    let table = contracts::routes(table);
    let table = disputes::routes(table);
    let table = reviews::routes(table);
    let table = me::routes(table);
    let table = users::routes(table);
    let table = audit::routes(table);
    let table = payouts::routes(table);
    analytics::routes(table)
}
