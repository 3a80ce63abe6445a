-- Read marks are what users write, not what events derive (issue 8, item 7): they move out of
-- `read.notifications`, which `gigledger projections rebuild notifications` replaces (a rebuilt
-- table had every notification unread again), into a table no read model lists in `TABLES`.
--
-- One mark per user: `POST /v1/me/notifications/read { "up_to": id }` marks every notification
-- up to that one read, in the log's (transaction_id, position) order, the order notifications
-- are listed in. A notification projected later always sorts after every one already listed, so
-- a mark never covers one the user could not have seen. Read means `(transaction_id, position)
-- <= the mark`; the unread ones are the range of `notifications_by_user` above the mark, so
-- `unread=true` and the unread count read exactly the unread entries of that index (what a
-- partial index `where not read` would give, without a flag a rebuild resets).
--
-- The stored (transaction_id, position) of an event never changes (not by a rebuild, not by a
-- restore into another cluster: see log epochs), so a mark keeps meaning the same notification.
create table read.notification_read_marks (
    user_id        uuid primary key,
    transaction_id bigint not null,
    position       bigint not null
);

grant select, insert, update on read.notification_read_marks to gigledger_app;

-- Flags set before this migration: each user's mark is the last notification of the prefix
-- (in log order) that is all read, so no notification that was unread becomes read.
insert into read.notification_read_marks (user_id, transaction_id, position)
select distinct on (n.user_id) n.user_id, n.transaction_id, n.position
  from read.notifications n
 where n.read
   and not exists (
       select 1 from read.notifications u
        where u.user_id = n.user_id and not u.read
          and (u.transaction_id, u.position) < (n.transaction_id, n.position))
 order by n.user_id, n.transaction_id desc, n.position desc;

alter table read.notifications drop column read;
