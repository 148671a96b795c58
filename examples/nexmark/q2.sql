-- Nexmark q2, selection: the bids on a few auctions (every 123rd auction id).
--
-- Differs from Flink's nexmark q2: `auction % 123` instead of `MOD(auction, 123)` (spillway
-- has the operator, not yet the function), and the bids come straight from the 'nexmark'
-- connector instead of a VIEW over one table of all events.

CREATE TABLE bid (
  auction BIGINT,
  bidder BIGINT,
  price BIGINT,
  channel VARCHAR,
  url VARCHAR,
  dateTime TIMESTAMP(3),
  extra VARCHAR,
  WATERMARK FOR dateTime AS dateTime - INTERVAL '4' SECOND
) WITH (
  'connector' = 'nexmark',
  'nexmark.table' = 'bid',
  'events.num' = '10000000',
  'seed' = '0'
);

CREATE TABLE nexmark_q2 (
  auction BIGINT,
  price BIGINT
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_q2
SELECT auction, price FROM bid WHERE auction % 123 = 0;
