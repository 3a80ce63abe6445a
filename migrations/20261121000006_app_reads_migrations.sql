-- The service, connected as a member of gigledger_app, checks at start-up (and in /readyz) that
-- every migration it knows is applied; applying them is the owner's job (`gigledger migrate`).
grant select on _sqlx_migrations to gigledger_app;
