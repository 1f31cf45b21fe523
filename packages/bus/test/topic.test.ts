import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isValidFilter, topicMatches } from '../src/topic.ts';

test('topicMatches: exact, + and #', () => {
  assert.ok(topicMatches('nodes/a/information', 'nodes/a/information'));
  assert.ok(topicMatches('nodes/+/information', 'nodes/w1/information'));
  assert.ok(!topicMatches('nodes/+/information', 'nodes/w1/x/information'));
  assert.ok(!topicMatches('nodes/+/information', 'nodes/w1/job'));
  assert.ok(topicMatches('nodes/+/jobs/resources', 'nodes/w1/jobs/resources'));
  assert.ok(topicMatches('nodes/#', 'nodes/w1/logs/r1'));
  assert.ok(topicMatches('nodes/#', 'nodes'), '# matches the parent level');
  assert.ok(topicMatches('#', 'a/b/c'));
  assert.ok(!topicMatches('#', '$SYS/broker'));
  assert.ok(!topicMatches('+/broker', '$SYS/broker'));
  assert.ok(topicMatches('$SYS/#', '$SYS/broker'));
  assert.ok(topicMatches('nodes/+/logs/+', 'nodes/w1/logs/r1'));
  assert.ok(!topicMatches('nodes/+/logs/+', 'nodes/w1/logs'));
  assert.ok(topicMatches('a/+', 'a/'), 'empty level matches +');
  assert.ok(!topicMatches('a/b', 'a/b/c'));
  assert.ok(!topicMatches('a/b/c', 'a/b'));
});

test('isValidFilter', () => {
  assert.ok(isValidFilter('nodes/+/job'));
  assert.ok(isValidFilter('#'));
  assert.ok(isValidFilter('a/#'));
  assert.ok(!isValidFilter('a/#/b'));
  assert.ok(!isValidFilter('a/b#'));
  assert.ok(!isValidFilter('a/x+'));
  assert.ok(!isValidFilter(''));
});
