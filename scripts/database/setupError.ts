/** A database that cannot be had for a reason an operator fixes (a setting, a missing tool): its message says which. */
export class DatabaseSetupError extends Error {}
