-- leasehold store: subjects and resources of up to 1024 bytes (migration 3). Needs migration 1.
--
-- The engine accepts names of up to `leasehold::MAX_NAME_LEN` = 1024 bytes; migration 1 capped
-- them at 256, so a longer subject's insert failed with a constraint violation. Same
-- conventions as 0001_schema.sql ("leasehold" is the schema placeholder).

ALTER TABLE "leasehold".sessions
    DROP CONSTRAINT sessions_subject_len,
    ADD CONSTRAINT sessions_subject_len CHECK (octet_length(subject) BETWEEN 1 AND 1024),
    DROP CONSTRAINT sessions_resource_len,
    ADD CONSTRAINT sessions_resource_len
        CHECK (resource IS NULL OR octet_length(resource) BETWEEN 1 AND 1024);
