-- GMV gains what left the platform (issue 11): paid out to freelancers (less payouts that failed
-- after being paid) and refunded to cards, per UTC day and currency. Sums grow without bound, so
-- numeric, as the other money sums of the rollup.
alter table read.analytics_daily
    add column paid_out numeric not null default 0,
    add column refunded_to_card numeric not null default 0;

-- The events already counted into those two figures, so that a batch applied again (a rebuild's
-- overlap, a re-delivery) counts nothing twice.
create table read.analytics_money_out (position bigint primary key);
grant select, insert, update, delete on read.analytics_money_out to gigledger_app;
