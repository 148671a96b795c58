-- Bid statistics per channel per 10 second tumbling window: how many bids, and the
-- highest, lowest, total and average price.
--
-- Not one of the published Nexmark queries: a windowed, simplified form of q15 / q16
-- (bid statistics per day and channel, with FILTER and COUNT(DISTINCT), which spillway
-- does not have yet). Four hot channels get half the bids; the rest spread over 10 000.

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

CREATE TABLE nexmark_window_channel (
  channel VARCHAR,
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  bids BIGINT,
  max_price BIGINT,
  min_price BIGINT,
  sum_price BIGINT,
  avg_price DOUBLE
) WITH ('connector' = 'blackhole');

INSERT INTO nexmark_window_channel
SELECT channel, window_start, window_end,
       COUNT(*), MAX(price), MIN(price), SUM(price), AVG(price)
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dateTime), INTERVAL '10' SECOND))
GROUP BY channel, window_start, window_end;
