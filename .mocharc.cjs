// mocha's configuration. The spec (every test) applies only when no test file is named on
// the command line: mocha appends command-line files to a configured spec, so
// `npx mocha test/x.test.ts` would otherwise run the whole suite.
const named = process.argv.slice(2).some((a) => /\.test\.ts$/.test(a) || a.startsWith('test/'));
function lane() {
  const faults = 'test/hosts/faults-*.test.ts';
  // `npm run test:lb` (about 4 minutes on real Docker and HAProxy); npm test runs the load
  // balancer's multi-host test, its review tests and its plan tables instead
  const lb = 'test/e2e/loadbalancing.test.ts';
  // Terraform (no Docker; mostly terraform restarting its provider) runs beside the hosts tests, which mostly wait
  const terraform = 'test/ecsapi/terraform.test.ts';
  if (process.env.BERTH_TEST_LANE === 'hosts') return { spec: ['test/hosts/*.test.ts', terraform], ignore: [faults] };
  if (process.env.BERTH_TEST_LANE === 'rest') return { spec: ['test/**/*.test.ts'], ignore: [faults, lb, terraform, 'test/hosts/*.test.ts'] };
  return { spec: ['test/**/*.test.ts'], ignore: [faults, lb] };
}
module.exports = {
  'node-option': ['import=tsx'],
  // the fault scenarios beyond R5 and R6 (test/hosts/faults-*.test.ts, about 20 minutes) run in
  // `npm run test:faults`, not in every `npm test`
  // BERTH_TEST_LANE (hack/test.sh): `hosts` runs the multi-host tests only, `rest` all the others
  ...(named ? {} : lane()),
  reporter: 'test/support/reporter.cjs',
  timeout: 60000,
  exit: true,
};
