-- Plans for the gig board's filters that never walk the whole board (issue 8, item 1).
--
-- `search_gigs` picks one static statement by which filters are present, each driven by the
-- index of its most selective filter: the text search's GIN, the skills side table, the
-- currency, the status, or plain newest first. The indexes below serve the drivers that had
-- none.

-- One row per (gig, skill), written by the gig_board projection with the board row: "any of
-- these skills, newest first" becomes one ordered index scan per skill, each stopping after a
-- page, where `skills && $1` on the board could only walk the newest-first index (rare skill:
-- the whole board) or fetch every match and sort it (common skill).
create table read.gig_skills (
    gig_id    uuid not null,
    skill     text not null,
    -- the gig's posting time, copied so the index below orders a skill's gigs newest first
    posted_at timestamptz not null,
    -- also serves a revision's "the skills of this gig"
    primary key (gig_id, skill)
);

create index gig_skills_newest on read.gig_skills (skill, posted_at desc, gig_id desc);

-- currency (with any status or budget filter as a filter): an equality then the keyset order
create index gig_board_currency_newest on read.gig_board (currency, posted_at desc, gig_id desc);

-- The board's existing gigs, so a database migrated with gigs on its board needs no rebuild.
insert into read.gig_skills (gig_id, skill, posted_at)
select distinct g.gig_id, s.skill, g.posted_at
  from read.gig_board g cross join lateral unnest(g.skills) as s(skill)
on conflict do nothing;

analyze read.gig_skills;

-- the application writes it (projection) and reads it (board); analysts read schema analytics only
grant select, insert, update, delete on read.gig_skills to gigledger_app;

-- A selective budget filter (few gigs of the currency pass it): its matches by range, then
-- sorted (walk_then_select in gig_board.rs). A minimum tests budget_max (the maximum, if given
-- too, is checked in the index); a maximum alone tests budget_min.
create index gig_board_currency_budget_max on read.gig_board (currency, budget_max, budget_min);
create index gig_board_currency_budget_min on read.gig_board (currency, budget_min);
