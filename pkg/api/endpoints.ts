import { z } from 'zod';

/**
 * Endpoints: where a service's healthy tasks are reached, derived by the endpoints
 * controller (as Kubernetes derives Endpoints/EndpointSlices from a Service's pods). One
 * object per service, in the service's cluster, named as the service. Nodes read them (their
 * own cluster's) to answer service discovery DNS; nobody else writes them.
 */
export const EndpointPort = z.strictObject({
  containerName: z.string().max(255),
  containerPort: z.number().int().min(0).max(65535),
  /** the port clients connect to: the host port (bridge, host) or the container port (awsvpc) */
  port: z.number().int().min(0).max(65535),
  protocol: z.enum(['tcp', 'udp']),
});
export type EndpointPort = z.infer<typeof EndpointPort>;

export const EndpointSubset = z.strictObject({
  /** the task's name (its id) */
  task: z.string().max(255),
  /** the task's ARN */
  taskArn: z.string().max(1024).optional(),
  containerInstance: z.string().max(255).optional(),
  /** IPv4 (or IPv6) address: the instance's registered address (bridge, host) or the task's own (awsvpc) */
  address: z.string().max(64),
  ports: z.array(EndpointPort).max(100),
});
export type EndpointSubset = z.infer<typeof EndpointSubset>;

export const EndpointsSpec = z.strictObject({
  /** one per healthy task, ordered by task name */
  subsets: z.array(EndpointSubset).max(10_000).default([]),
});
export type EndpointsSpec = z.infer<typeof EndpointsSpec>;

export const EndpointsStatus = z.strictObject({});
