-- The aggregate version each view reflects (issue 8, item 5), for `ETag` and `If-Match`.
--
-- `version` is the stream sequence of the last event of the view's aggregate that the read model
-- applied, whether or not that event changed anything else in the row (a withdrawn or rejected
-- proposal is a gig event that leaves the board's row as it was; a milestone event leaves the
-- contract's row as it was). `last_position` cannot stand in for it: it moves only with the
-- events that change the row, and it is a global position, not the aggregate's version.
--
-- The handlers set it after every event of the stream with `where version < $sequence`:
-- sequences increase along a stream, so a replayed event changes nothing.

alter table read.gig_board add column version bigint not null default 0;
alter table read.contracts add column version bigint not null default 0;

-- The escrow is its own aggregate (stream id = contract id) and a contract's view shows its
-- balances, so the view reflects the escrow's version too. It is a table of its own, not a
-- column of `contracts`: the escrow stream may be projected before ContractStarted, and each row
-- keeps one writing stream.
create table read.contract_escrows (
    contract_id uuid primary key,
    version     bigint not null
);

grant select on read.contract_escrows to gigledger_analyst;
grant select, insert, update, delete on read.contract_escrows to gigledger_app;

-- Rows projected before this migration: the last event of their stream at or before the read
-- model's checkpoint (what the model has applied). A model without a checkpoint has no rows.
update read.gig_board g
   set version = coalesce((
           select max(e.sequence)
             from events e, projection_checkpoints c
            where c.name = 'gig_board'
              and e.aggregate_type = 'gig' and e.aggregate_id = g.gig_id::text
              and (e.transaction_id::text::bigint, e.position) <= (c.transaction_id, c.position)),
       0);

update read.contracts k
   set version = coalesce((
           select max(e.sequence)
             from events e, projection_checkpoints c
            where c.name = 'contracts'
              and e.aggregate_type = 'contract' and e.aggregate_id = k.contract_id::text
              and (e.transaction_id::text::bigint, e.position) <= (c.transaction_id, c.position)),
       0);

insert into read.contract_escrows (contract_id, version)
select b.contract_id, max(e.sequence)
  from (select distinct contract_id from read.contract_escrow_balances) b,
       events e, projection_checkpoints c
 where c.name = 'contracts'
   and e.aggregate_type = 'escrow' and e.aggregate_id = b.contract_id::text
   and (e.transaction_id::text::bigint, e.position) <= (c.transaction_id, c.position)
 group by b.contract_id;
