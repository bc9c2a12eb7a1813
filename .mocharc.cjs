// mocha's configuration. The spec (every test) applies only when no test file is named on
// the command line: mocha appends command-line files to a configured spec, so
// `npx mocha test/x.test.ts` would otherwise run the whole suite.
const named = process.argv.slice(2).some((a) => /\.test\.ts$/.test(a) || a.startsWith('test/'));
module.exports = {
  'node-option': ['import=tsx'],
  ...(named ? {} : { spec: ['test/**/*.test.ts'] }),
  reporter: 'test/support/reporter.cjs',
  timeout: 60000,
  exit: true,
};
