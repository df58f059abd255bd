-- Routing rules of a link (split by weight, targets by device, system or language), as the
-- JSON the server validated. Few links have rules, so they live beside the other rarely set
-- options in `link_guards`, which every lookup already joins: a link without rules costs
-- no byte and no extra probe.
ALTER TABLE link_guards ADD COLUMN rules TEXT;
