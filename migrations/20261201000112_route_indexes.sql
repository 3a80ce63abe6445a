-- Indexes for the listings the routes of API.md need (issue 8, item 4). Each listing is one
-- index range scan in the listing's order, read up to the page's end: no sort, no scan of
-- anyone else's rows.

-- GET /v1/me/gigs: a client's gigs newest first, keyset (posted_at, gig_id) as on the board.
create index gig_board_by_client on read.gig_board (client_id, posted_at desc, gig_id desc);
-- GET /v1/me/gigs?status=: the same within one status.
create index gig_board_by_client_status
    on read.gig_board (client_id, status, posted_at desc, gig_id desc);

-- GET /v1/disputes?status=: the admin queue in the order disputes were opened (the
-- DisputeOpened event's position is unique: one event opens one dispute).
create index contract_disputes_queue on read.contract_disputes (status, opened_position);
-- GET /v1/disputes: every dispute in that order.
create index contract_disputes_opened on read.contract_disputes (opened_position);
