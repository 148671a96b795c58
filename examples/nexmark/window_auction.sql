-- Bid statistics per auction per 10 second tumbling window: how many bids, and the
-- highest, lowest, total and average price.
--
-- Not one of the published Nexmark queries: it is q5's per-auction bid count (q5 uses a
-- HOP window and then keeps the top auction, which spillway cannot do yet) over TUMBLE
-- windows, with more aggregates. The keys (auction ids) are spread over every partition
-- of the stream, so on several shards each window's result merges partial aggregates.

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

CREATE TABLE nexmark_window_auction (
  auction BIGINT,
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  bids BIGINT,
  max_price BIGINT,
  min_price BIGINT,
  sum_price BIGINT,
  avg_price DOUBLE
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_window_auction
SELECT auction, window_start, window_end,
       COUNT(*), MAX(price), MIN(price), SUM(price), AVG(price)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
GROUP BY auction, window_start, window_end;
