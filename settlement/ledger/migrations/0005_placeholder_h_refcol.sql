-- Placeholder on branch h-refcol only: migration 0005 belongs to another branch. The
-- integrator deletes this file when merging (0007 is this branch's migration); it changes nothing.
SELECT 1;
