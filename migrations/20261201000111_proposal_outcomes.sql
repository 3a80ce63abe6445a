-- What became of proposals nobody decided (issue 8, item 6). The gig aggregate leaves them
-- pending, but a freelancer must not read "pending" for ever:
--
-- | status        | when                                                  | final? |
-- |---------------|-------------------------------------------------------|--------|
-- | not_selected  | another proposal of the gig was accepted              | yes    |
-- | gig_cancelled | the gig was cancelled                                 | yes    |
-- | gig_closed    | the gig was closed; the owner may still accept it     | no     |
--
-- `decided_at` is the acceptance's or the cancellation's time; a closed gig decides nothing, so a
-- `gig_closed` proposal keeps `decided_at` null. An explicit event about the proposal itself
-- (withdrawn, rejected, accepted) still sets its status afterwards: the aggregate allows those
-- while it holds the proposal as pending.

alter table read.proposals drop constraint proposals_status_check;
alter table read.proposals add constraint proposals_status_check
    check (status in ('pending', 'withdrawn', 'rejected', 'accepted',
                      'not_selected', 'gig_cancelled', 'gig_closed'));

-- Rows projected before this migration, from the gig events the proposals model has applied (at
-- or before its checkpoint), as the handler now projects them. Payloads are externally tagged
-- (`{"GigCancelled": {...}}`); every version of these events carries the times used here.
update read.proposals p
   set status = 'not_selected',
       decided_at = (e.payload -> 'ProposalAccepted' ->> 'accepted_at')::timestamptz,
       last_position = e.position
  from events e, projection_checkpoints c
 where c.name = 'proposals'
   and p.status = 'pending'
   and e.aggregate_type = 'gig' and e.aggregate_id = p.gig_id::text
   and e.event_type = 'ProposalAccepted'
   and e.payload -> 'ProposalAccepted' ->> 'proposal_id' <> p.proposal_id::text
   and e.position > p.last_position
   and (e.transaction_id::text::bigint, e.position) <= (c.transaction_id, c.position);

update read.proposals p
   set status = 'gig_cancelled',
       decided_at = (e.payload -> 'GigCancelled' ->> 'cancelled_at')::timestamptz,
       last_position = e.position
  from events e, projection_checkpoints c
 where c.name = 'proposals'
   and p.status = 'pending'
   and e.aggregate_type = 'gig' and e.aggregate_id = p.gig_id::text
   and e.event_type = 'GigCancelled'
   and e.position > p.last_position
   and (e.transaction_id::text::bigint, e.position) <= (c.transaction_id, c.position);

update read.proposals p
   set status = 'gig_closed',
       last_position = e.position
  from events e, projection_checkpoints c
 where c.name = 'proposals'
   and p.status = 'pending'
   and e.aggregate_type = 'gig' and e.aggregate_id = p.gig_id::text
   and e.event_type = 'GigClosed'
   and e.position > p.last_position
   and (e.transaction_id::text::bigint, e.position) <= (c.transaction_id, c.position);
