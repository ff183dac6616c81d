"""Analytic ray casting of the synthetic scenes, batched over scenes and pixels in torch.

A pinhole camera (60 degree field of view, pitched down) stands in a room: floor, ceiling and
a back wall turned about the vertical axis. Spheres, boxes (turned about the vertical axis) and
vertical cylinders rest on the floor. Every pixel's ray is intersected with every surface; the
nearest hit (a z-buffer) gives the class, the depth (camera z), the surface normal and the
albedo. The image is Lambert shading under a point light plus ambient light, with fog, so it
carries the geometry. Normals are analytic at the hit point. Coordinates: world y up; camera x right, y up, z forward (into the scene),
so normals facing the camera have negative z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from mtlexport.data.labels import SYNTHETIC_CLASSES

TAN_HALF_FOV = math.tan(math.radians(30.0))
WALL, FLOOR, CEILING = 0, 1, 2
FIRST_OBJECT_CLASS = 3
SPHERE, BOX, CYLINDER = 0, 1, 2
NUM_OBJECT_TYPES = 3
_INF = float("inf")

# Typical RGB albedo per class; each scene blends it with a random colour.
_CLASS_RGB = torch.tensor(
    [[0.78, 0.74, 0.66], [0.55, 0.40, 0.28], [0.88, 0.88, 0.90],  # wall, floor, ceiling
     [0.85, 0.25, 0.20], [0.25, 0.40, 0.85], [0.30, 0.72, 0.32]]  # sphere, box, cylinder
)  # fmt: skip
assert len(_CLASS_RGB) == len(SYNTHETIC_CLASSES)


@dataclass
class SceneParams:
    """Random parameters of N scenes with K object slots (all tensors, first dim N)."""

    cam_height: Tensor  # (N,) camera height above the floor
    pitch: Tensor  # (N, 2) cos and sin of the downward pitch
    room_height: Tensor  # (N,)
    wall_dist: Tensor  # (N,) back wall distance on the optical axis
    wall_yaw: Tensor  # (N, 2) cos and sin of the wall's turn about y
    light_pos: Tensor  # (N, 3) world position of the point light
    light_power: Tensor  # (N,)
    ambient: Tensor  # (N,)
    fog: Tensor  # (N,) f in the transmittance 1 / (1 + f * depth)^2
    fog_rgb: Tensor  # (N, 3)
    room_rgb: Tensor  # (N, 3, 3) wall / floor / ceiling albedo
    tile: Tensor  # (N,) floor tile size
    noise_std: Tensor  # (N,)
    obj_active: Tensor  # (N, K) bool
    obj_type: Tensor  # (N, K) SPHERE / BOX / CYLINDER
    obj_center: Tensor  # (N, K, 3)
    obj_size: Tensor  # (N, K, 3) radius or half extents (x, y, z)
    obj_yaw: Tensor  # (N, K, 2) cos and sin of each box's turn about y
    obj_rgb: Tensor  # (N, K, 3)

    def select(self, index: slice) -> SceneParams:
        """The scenes ``index`` (a slice along N)."""
        return SceneParams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def cat(parts: list[SceneParams]) -> SceneParams:
        """Concatenate along N."""
        return SceneParams(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(SceneParams)})


def sample_params(n: int, max_objects: int, gen: torch.Generator) -> SceneParams:
    """Draw ``n`` scenes from ``gen``; the number of draws does not depend on their values.

    Angles are stored as cos/sin here so that rendering uses only correctly rounded operations
    and gives bit-identical pixels however scenes are batched or threads split the work.
    """
    k = max_objects

    def uni(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(shape or (n,), generator=gen)

    cam_height = uni(1.0, 1.7)
    room_height = uni(2.6, 3.4)
    wall_dist = uni(6.0, 10.0)
    side = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
    light_pos = torch.stack(
        [side * uni(1.0, 3.0), (room_height - cam_height) * uni(0.3, 0.9), uni(0.5, 5.0)], dim=1
    )
    blend = uni(0.0, 0.35, n, 3, 1)
    room_rgb = (1 - blend) * _CLASS_RGB[:3] + blend * torch.rand(n, 3, 3, generator=gen)
    count = torch.randint(1, k + 1, (n,), generator=gen)
    obj_type = torch.randint(0, NUM_OBJECT_TYPES, (n, k), generator=gen)
    z = 2.2 + (wall_dist[:, None] - 3.2) * torch.rand(n, k, generator=gen)  # in front of the wall
    x = (torch.rand(n, k, generator=gen) * 2 - 1) * z * TAN_HALF_FOV * 0.85
    radius = uni(0.35, 0.9, n, k)
    box = torch.stack([uni(0.25, 0.7, n, k), uni(0.25, 0.8, n, k), uni(0.25, 0.7, n, k)], dim=-1)
    cyl_r, cyl_h = uni(0.25, 0.55, n, k), uni(0.35, 1.0, n, k)
    size = torch.where(
        (obj_type == SPHERE)[..., None],
        radius[..., None].expand(n, k, 3),
        torch.where((obj_type == BOX)[..., None], box, torch.stack([cyl_r, cyl_h, cyl_r], dim=-1)),
    )
    center = torch.stack([x, size[..., 1] - cam_height[:, None], z], dim=-1)
    obj_blend = uni(0.0, 0.6, n, k, 1)
    base = _CLASS_RGB[FIRST_OBJECT_CLASS + obj_type]
    obj_rgb = (1 - obj_blend) * base + obj_blend * torch.rand(n, k, 3, generator=gen)
    return SceneParams(
        cam_height=cam_height,
        pitch=_cos_sin(uni(0.0, 0.3)),
        room_height=room_height,
        wall_dist=wall_dist,
        wall_yaw=_cos_sin(uni(-0.3, 0.3)),
        light_pos=light_pos,
        light_power=uni(0.7, 1.1),
        ambient=uni(0.12, 0.3),
        fog=uni(0.01, 0.05),
        fog_rgb=uni(0.4, 0.7, n, 1) + uni(-0.05, 0.05, n, 3),
        room_rgb=room_rgb,
        tile=uni(0.4, 0.8),
        noise_std=uni(0.005, 0.025),
        obj_active=torch.arange(k)[None, :] < count[:, None],
        obj_type=obj_type,
        obj_center=center,
        obj_size=size,
        obj_yaw=_cos_sin(uni(0.0, math.pi / 2, n, k)),
        obj_rgb=obj_rgb,
    )


def _cos_sin(angle: Tensor) -> Tensor:
    return torch.stack([angle.cos(), angle.sin()], dim=-1)


def _col(x: Tensor, i: int | None = None) -> Tensor:
    """(P,) or (P, C)[:, i] -> (P, 1, 1) for broadcasting against (P, H, W)."""
    return (x if i is None else x[:, i])[:, None, None]


def _pick(x: Tensor, slot: Tensor) -> Tensor:
    """Per-slot values (N, K) gathered at every pixel's slot (N, H, W)."""
    return x.gather(1, slot.view(slot.shape[0], -1)).view(slot.shape)


# Ray casts: unit ray directions (dx, dy, dz) from the origin; per-pair parameters are (P, C).
# Each returns the distance to the first hit along the ray, inf where there is none.


def _hit_sphere(dx: Tensor, dy: Tensor, dz: Tensor, c: Tensor, s: Tensor) -> Tensor:
    cx, cy, cz = _col(c, 0), _col(c, 1), _col(c, 2)
    b = dx * cx + dy * cy + dz * cz
    disc = b * b - _col((c * c).sum(1) - s[:, 0] ** 2)
    t = b - disc.clamp_min(0).sqrt()
    return torch.where((disc > 0) & (t > 0), t, _INF)


def _hit_box(dx: Tensor, dy: Tensor, dz: Tensor, c: Tensor, s: Tensor, yaw: Tensor) -> Tensor:
    cos, sin = yaw[:, 0], yaw[:, 1]
    # Slabs in the box frame (rotated by -yaw about y): t = (+-half - origin) / direction.
    origin = torch.stack([-(cos * c[:, 0] - sin * c[:, 2]), -c[:, 1], -(sin * c[:, 0] + cos * c[:, 2])], 1)
    lo, hi = -s - origin, s - origin
    cos, sin = _col(cos), _col(sin)
    near = far = None
    for i, d in enumerate((cos * dx - sin * dz, dy, sin * dx + cos * dz)):
        inv = d.reciprocal()
        t1, t2 = _col(lo, i) * inv, _col(hi, i) * inv
        a, b = torch.minimum(t1, t2), torch.maximum(t1, t2)
        near = a if near is None else torch.maximum(near, a)
        far = b if far is None else torch.minimum(far, b)
    return torch.where((near <= far) & (near > 0), near, _INF)


def _hit_cylinder(dx: Tensor, dy: Tensor, dz: Tensor, c: Tensor, s: Tensor) -> Tensor:
    cx, cy, cz, r, hh = _col(c, 0), _col(c, 1), _col(c, 2), _col(s, 0), _col(s, 1)
    a = dx * dx + dz * dz
    b = dx * cx + dz * cz
    disc = b * b - a * (cx * cx + cz * cz - r * r)
    ts = (b - disc.clamp_min(0).sqrt()) / a
    side = (disc > 0) & (ts > 0) & ((ts * dy - cy).abs() <= hh)
    top = cy + hh
    tc = top / dy
    xc, zc = tc * dx - cx, tc * dz - cz
    cap = (tc > 0) & (xc * xc + zc * zc <= r * r) & (top < 0)  # the top, seen from above only
    return torch.minimum(torch.where(side, ts, _INF), torch.where(cap, tc, _INF))


def _object_normals(q: list[Tensor], kind: Tensor, size: list[Tensor], cos: Tensor, sin: Tensor) -> list[Tensor]:
    """World normals at hit points ``q`` relative to each pixel's object centre."""
    qx, qy, qz = q
    r = size[0]
    # Cylinder: the top cap where the point is nearer the cap plane than the side.
    radial = torch.sqrt(qx * qx + qz * qz)
    cap = (size[1] - qy) < (r - radial)
    cyl = [torch.where(cap, 0.0, qx / r), cap.to(qx.dtype), torch.where(cap, 0.0, qz / r)]
    # Box: the face whose slab the local point is closest to; then rotate back by yaw.
    lx, lz = cos * qx - sin * qz, sin * qx + cos * qz
    ax, ay, az = lx.abs() / size[0], qy.abs() / size[1], lz.abs() / size[2]
    on_x = (ax >= ay) & (ax >= az)
    on_y = ~on_x & (ay >= az)
    on_z = ~on_x & ~on_y
    nx, ny, nz = on_x * torch.sign(lx), on_y * torch.sign(qy), on_z * torch.sign(lz)
    box = [cos * nx + sin * nz, ny, -sin * nx + cos * nz]
    sph = [qx / r, qy / r, qz / r]
    return [torch.where(kind == SPHERE, a, torch.where(kind == BOX, b, c)) for a, b, c in zip(sph, box, cyl)]


def render(p: SceneParams, height: int, width: int) -> dict[str, Tensor]:
    """Ray-cast N scenes. Returns ``rgb`` (N,3,H,W) in [0, 1] before noise, ``segmentation``
    (N,H,W) uint8, ``depth`` (N,H,W) camera z, ``normals`` (N,3,H,W) in the camera frame and
    ``instance_pixels`` (N,K): visible pixels of every object slot."""
    n, k = p.obj_type.shape
    u = ((torch.arange(width) + 0.5) / width * 2 - 1) * TAN_HALF_FOV
    v = -((torch.arange(height) + 0.5) / height * 2 - 1) * TAN_HALF_FOV * height / width
    z_per_t = torch.rsqrt(u.view(1, 1, width) ** 2 + v.view(1, height, 1) ** 2 + 1)  # camera z per unit
    cp, sp = _col(p.pitch, 0), _col(p.pitch, 1)
    dx = u.view(1, 1, width) * z_per_t  # (1, H, W): unit rays, pitched down about x
    cam_y = v.view(1, height, 1) * z_per_t
    dy = cam_y * cp - z_per_t * sp
    dz = cam_y * sp + z_per_t * cp

    # Room: back wall (normal w, plane w.x = w_z * wall_dist), then floor or ceiling.
    wx, wz = _col(p.wall_yaw, 1), -_col(p.wall_yaw, 0)
    t_wall = (wz * _col(p.wall_dist)) / (wx * dx + wz * dz).clamp_max(-1e-6)
    below = dy < 0
    t_plane = (torch.where(below, -_col(p.cam_height), _col(p.room_height - p.cam_height)) / dy).abs()
    on_wall = t_wall <= t_plane
    t_room = torch.where(on_wall, t_wall, t_plane)
    cls_room = torch.where(on_wall, WALL, torch.where(below, FLOOR, CEILING))

    # Objects: each type is cast only for the slots that hold it; a z-buffer picks the nearest.
    t_obj = torch.full((n, k, height, width), _INF)
    for kind in (SPHERE, BOX, CYLINDER):
        si, ki = torch.nonzero(p.obj_active & (p.obj_type == kind), as_tuple=True)
        if si.numel() == 0:
            continue
        rays = (dx, dy[si], dz[si])
        c, s = p.obj_center[si, ki], p.obj_size[si, ki]
        if kind == SPHERE:
            t_obj[si, ki] = _hit_sphere(*rays, c, s)
        elif kind == BOX:
            t_obj[si, ki] = _hit_box(*rays, c, s, p.obj_yaw[si, ki])
        else:
            t_obj[si, ki] = _hit_cylinder(*rays, c, s)
    t_near, slot = t_obj.min(dim=1)
    is_obj = t_near < t_room
    t = torch.where(is_obj, t_near, t_room)
    kind = _pick(p.obj_type, slot)
    seg = torch.where(is_obj, FIRST_OBJECT_CLASS + kind, cls_room)
    px, py, pz = t * dx, t * dy, t * dz

    # Normals (world): analytic per object type, constant per room surface.
    q = [pos - _pick(p.obj_center[..., i], slot) for i, pos in enumerate((px, py, pz))]
    size = [_pick(p.obj_size[..., i], slot) for i in range(3)]
    obj_n = _object_normals(q, kind, size, _pick(p.obj_yaw[..., 0], slot), _pick(p.obj_yaw[..., 1], slot))
    on_floor, on_ceiling = cls_room == FLOOR, cls_room == CEILING
    room_n = [torch.where(on_wall, wx, 0.0), on_floor.float() - on_ceiling.float(), torch.where(on_wall, wz, 0.0)]
    nwx, nwy, nwz = [torch.where(is_obj, a, b) for a, b in zip(obj_n, room_n)]

    # Albedo: room colours with floor tiles and wall seams; object colours per slot.
    tile = _col(p.tile)
    checker = ((torch.floor(px / tile) + torch.floor(pz / tile)).remainder(2) * 2 - 1) * 0.12
    seam = (torch.remainder(py / 0.6, 1.0) < 0.06).float() * -0.15
    texture = 1 + torch.where(on_floor, checker, torch.where(on_wall, seam, 0.0))

    # Lambert shading under the point light, then fog by depth.
    lx, ly, lz = _col(p.light_pos, 0) - px, _col(p.light_pos, 1) - py, _col(p.light_pos, 2) - pz
    dist2 = lx * lx + ly * ly + lz * lz
    lambert = ((nwx * lx + nwy * ly + nwz * lz) * torch.rsqrt(dist2)).clamp_min(0)
    depth = t * z_per_t
    fog = 1.0 / (1.0 + _col(p.fog) * depth) ** 2  # transmittance; no exp (see sample_params)
    light = (_col(p.ambient) + _col(p.light_power) * lambert / (1 + dist2 / 9.0)) * fog
    rgb = []
    for ch in range(3):
        room = torch.where(on_wall, _col(p.room_rgb[:, WALL, ch]),
                           torch.where(on_floor, _col(p.room_rgb[:, FLOOR, ch]), _col(p.room_rgb[:, CEILING, ch])))
        albedo = torch.where(is_obj, _pick(p.obj_rgb[..., ch], slot), room * texture)
        rgb.append(albedo * light + _col(p.fog_rgb[:, ch]) * (1 - fog))  # fmt: skip

    normals = torch.stack([nwx, nwy * cp + nwz * sp, -nwy * sp + nwz * cp], dim=1)  # world -> camera
    inst = torch.where(is_obj, slot, k).view(n, -1)
    counts = torch.zeros(n, k + 1, dtype=torch.int64).scatter_add_(1, inst, torch.ones_like(inst))
    return {
        "rgb": torch.stack(rgb, dim=1).clamp_(0, 1),
        "segmentation": seg.to(torch.uint8),
        "depth": depth,
        "normals": normals,
        "instance_pixels": counts[:, :k],
    }
