-- Indexes for the listings the routes of API.md need (issue 8, item 4). Each listing is one
-- index range scan in the listing's order, read up to the page's end: no sort, no scan of
-- anyone else's rows.

-- GET /v1/me/gigs: a client's gigs newest first, keyset (posted_at, gig_id) as on the board.
create index gig_board_by_client on read.gig_board (client_id, posted_at desc, gig_id desc);
-- GET /v1/me/gigs?status=: the same within one status.
create index gig_board_by_client_status
    on read.gig_board (client_id, status, posted_at desc, gig_id desc);

-- GET /v1/disputes?status=open|resolved: the admin queue in the order disputes were opened (the
-- DisputeOpened event's position is unique: one event opens one dispute). One partial index per
-- status, each read by its own statement naming the status as a literal: with one index on
-- (status, opened_position) a generic plan, which cannot tell how rare open disputes are, was
-- seen preferring the index below with a filter on status, i.e. a walk through every resolved
-- dispute to find the few open ones.
create index contract_disputes_open on read.contract_disputes (opened_position)
    where status = 'open';
create index contract_disputes_resolved on read.contract_disputes (opened_position)
    where status = 'resolved';
-- GET /v1/disputes: every dispute in that order.
create index contract_disputes_opened on read.contract_disputes (opened_position);
