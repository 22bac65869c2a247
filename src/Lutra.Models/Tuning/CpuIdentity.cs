using System.Runtime.InteropServices;
using Lutra.Core.Kernels;

namespace Lutra.Models.Tuning;

/// <summary>What a tuning decision says about the machine: the processor's name, the instruction set in use, its features.</summary>
internal static class CpuIdentity
{
    private static readonly Lazy<string> Described = new(Describe);

    public static string Value => Described.Value;

    private static string Describe() =>
        $"{ProcessorName() ?? RuntimeInformation.ProcessArchitecture.ToString()}; {KernelIsa.Selected}; {KernelIsa.DescribeCpu()}";

    // Linux names the processor in /proc/cpuinfo ("model name" on x86, often absent on ARM).
    private static string? ProcessorName()
    {
        try
        {
            if (!File.Exists("/proc/cpuinfo"))
                return null;
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                var colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon > 0 && line[..colon].Trim() == "model name")
                    return line[(colon + 1)..].Trim();
            }
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
