export default function stop(): void {}
