using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Lutra.Core.Kernels;

/// <summary>The kernel families Lutra has, from the plain scalar reference up to AVX-512.</summary>
public enum InstructionSet
{
    /// <summary>Plain scalar C#: the reference semantics.</summary>
    Scalar,
    /// <summary>Portable <see cref="Vector128"/> code (SSE/NEON).</summary>
    Vector128,
    /// <summary>x86 AVX2 + FMA (256-bit).</summary>
    Avx2,
    /// <summary>x86 AVX-512 F/BW (512-bit), VBMI where present.</summary>
    Avx512,
}

/// <summary>
/// Chooses the instruction set once at start-up from the CPU's features. <c>LUTRA_ISA</c>
/// (scalar | vector128 | avx2 | avx512) forces a path, so the whole suite can run once per path.
/// </summary>
public static class KernelIsa
{
    public const string ForceVariable = "LUTRA_ISA";

    private static readonly Lazy<InstructionSet> SelectedLazy = new(Select);

    /// <summary>The instruction set the fast kernels use in this process.</summary>
    public static InstructionSet Selected => SelectedLazy.Value;

    /// <summary>Every instruction set this machine can run, scalar first.</summary>
    public static IReadOnlyList<InstructionSet> Supported { get; } = DetectSupported();

    public static bool IsSupported(InstructionSet isa) => Supported.Contains(isa);

    /// <summary>One line naming the CPU features .NET exposes here, for `lutra info --kernels` and bench.</summary>
    public static string DescribeCpu()
    {
        var features = new List<string>();
        if (Avx2.IsSupported) features.Add("AVX2");
        if (Fma.IsSupported) features.Add("FMA");
        if (Avx512F.IsSupported) features.Add("AVX512F");
        if (Avx512BW.IsSupported) features.Add("AVX512BW");
        if (Avx512Vbmi.IsSupported) features.Add("AVX512VBMI");
        if (AvxVnni.IsSupported) features.Add("AVX-VNNI");
        if (Gfni.IsSupported) features.Add("GFNI");
        if (System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported) features.Add("AdvSimd");
        if (System.Runtime.Intrinsics.Arm.Dp.IsSupported) features.Add("DotProd");
        return string.Join(' ', features);
    }

    private static List<InstructionSet> DetectSupported()
    {
        var list = new List<InstructionSet> { InstructionSet.Scalar };
        if (Vector128.IsHardwareAccelerated)
            list.Add(InstructionSet.Vector128);
        if (Avx2.IsSupported && Fma.IsSupported)
            list.Add(InstructionSet.Avx2);
        if (Avx512F.IsSupported && Avx512BW.IsSupported && Vector512.IsHardwareAccelerated)
            list.Add(InstructionSet.Avx512);
        return list;
    }

    private static InstructionSet Select()
    {
        var forced = Environment.GetEnvironmentVariable(ForceVariable);
        if (string.IsNullOrWhiteSpace(forced))
            return Supported[^1];
        if (!Enum.TryParse<InstructionSet>(forced, ignoreCase: true, out var isa))
            throw new ArgumentException($"{ForceVariable}='{forced}' is not one of: {string.Join(", ", Enum.GetNames<InstructionSet>())}");
        if (!IsSupported(isa))
            throw new NotSupportedException($"{ForceVariable}={isa} was requested but this CPU supports only {string.Join(", ", Supported)}");
        return isa;
    }
}
