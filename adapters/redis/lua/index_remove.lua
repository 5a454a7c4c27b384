#!lua flags=allow-oom
-- index_remove: removes members from one index (undo a reservation after a refused insert or
-- acquisition, release a slot's reservation, prune reservations of dead sessions). Frees
-- memory, so it may run on a full server.
--   KEYS[1]  the index;  ARGV  members (the adapter sends at most 1000 per call)
-- Returns the number removed.
if #ARGV == 0 then return 0 end
return redis.call('ZREM', KEYS[1], unpack(ARGV))
