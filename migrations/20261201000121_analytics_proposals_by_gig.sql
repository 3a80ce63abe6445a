-- A revised gig's figures move to its new skills and currency (issue 8, item 10): the analytics
-- handler then counts the gig's proposals per day, found by gig. A rebuild's copies get the
-- index too (`like … including all`).
create index analytics_proposals_by_gig on read.analytics_proposals (gig_id);
