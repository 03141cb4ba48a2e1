import type { Config } from 'jest';

const transform: Config['transform'] = {
  '^.+\\.ts$': ['ts-jest', { useESM: true }],
};

const common = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform,
};

// Projects so that `--selectProjects unit` runs without a control plane. Jest runs a
// project's globalSetup only when one of its tests is selected.
const config: Config = {
  testTimeout: 60_000,
  // The node scenarios' NATS clients can leave a socket behind the API's close (a known gap of
  // @nats-io/transport-node, see src/nats/connection.ts): the run ends when its tests do.
  forceExit: true,
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: ['<rootDir>/test/unit/**/*.test.ts'],
    },
    {
      ...common,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/integration/**/*.test.ts', '<rootDir>/test/e2e/**/*.test.ts'],
      // One kube-apiserver + etcd + kube-controller-manager serves the whole run; suites
      // isolate themselves by namespace.
      globalSetup: '<rootDir>/test/setup/control-plane-start.ts',
      globalTeardown: '<rootDir>/test/setup/control-plane-stop.ts',
    },
    {
      ...common,
      // A real worker node (root, a few minutes): one file, so the host's one node is shared
      // by every step and its teardown is tested last.
      displayName: 'node',
      testMatch: ['<rootDir>/test/node/**/*.test.ts'],
    },
  ],
};

export default config;
